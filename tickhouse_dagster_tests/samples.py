"""Sample landing files shared by tests that run the whole pipeline on the stack."""

from __future__ import annotations

from pathlib import Path

from tickhouse_dagster.sample import SampleSpec, generate


def two_profile_sample(root: Path) -> dict[str, bytes]:
    """Two tickhouse files of one day and a gzip FIXML file of the next: landing key → bytes."""
    generate(SampleSpec(symbols=3, ticks_per_day=3000, files_per_day=2), root)
    generate(
        SampleSpec(
            symbols=2,
            ticks_per_day=1000,
            files_per_day=1,
            profile="fixml",
            gzip=True,
            start_date=SampleSpec().start_date.replace(day=3),
        ),
        root / "fixml",
    )
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.xml*"))}
