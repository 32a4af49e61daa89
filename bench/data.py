"""Benchmark data sets: one trading day of generated tick XML, cached by size.

A data set lives in `<cache>/<ticks>-<files>/` next to a marker file holding the generator spec
and every file's size and tick count. It is reused only when the marker matches the spec asked
for and every file is still there with its size; otherwise it is generated again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path

from tickhouse_dagster.sample import SampleSpec, generate

DEFAULT_CACHE = Path(os.path.expanduser("~/.cache/tickhouse/bench-data"))
MARKER = "bench-data.json"
SYMBOLS = 20
SEED = 42
# One per tick: the record tag of each built-in layout.
RECORDS = {"tickhouse": b"<trade ", "fixml": b"<TrdCaptRpt "}


@dataclass(frozen=True)
class DataFile:
    path: Path
    bytes: int
    ticks: int


@dataclass(frozen=True)
class DataSet:
    spec: SampleSpec
    root: Path
    files: tuple[DataFile, ...]
    generated_s: float | None = None  # seconds spent generating it in this run; None if reused

    @property
    def ticks(self) -> int:
        return sum(f.ticks for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def trade_date(self) -> date:
        return self.spec.start_date

    @property
    def key(self) -> str:
        return data_key(self.spec)

    @property
    def profile(self) -> str:
        return self.spec.profile

    def describe(self) -> str:
        s = self.spec
        return (
            f"one {s.venue} trading day ({s.start_date}), {s.symbols} symbols, "
            f"{self.ticks:,} ticks in {len(self.files)} file{'s' * (len(self.files) != 1)} of the "
            f"`{s.profile}` layout, "
            f"{self.bytes / 1e6:,.0f} MB of XML, seed {s.seed}"
        )

    def subset(self, min_mb: float) -> tuple[DataFile, ...]:
        """The first files (in path order) that together hold at least `min_mb` MB; all files
        when `min_mb` is 0 or the data set is smaller."""
        if min_mb <= 0:
            return self.files
        chosen: list[DataFile] = []
        for file in self.files:
            chosen.append(file)
            if sum(f.bytes for f in chosen) >= min_mb * 1e6:
                break
        return tuple(chosen)


def bench_spec(
    ticks: int, files: int, symbols: int = SYMBOLS, seed: int = SEED, profile: str = "tickhouse"
) -> SampleSpec:
    return SampleSpec(
        days=1,
        symbols=symbols,
        ticks_per_day=ticks,
        files_per_day=files,
        seed=seed,
        profile=profile,
    )


def data_key(spec: SampleSpec) -> str:
    """The cache folder's name: `<ticks>-<files>`, plus `-<profile>` for layouts other than
    the project's own (so the data sets cached before profiles were added stay valid)."""
    key = f"{spec.ticks_per_day}-{spec.files_per_day}"
    return key if spec.profile == "tickhouse" else f"{key}-{spec.profile}"


def _marker_text(spec: SampleSpec) -> dict[str, object]:
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(spec).items()}


def count_records(path: Path, record: bytes = RECORDS["tickhouse"], chunk: int = 1 << 24) -> int:
    """Occurrences of the record tag `record`, read in chunks. The last bytes of a chunk are
    carried into the next one, so a tag split by a chunk edge is counted once (the carry is too
    short to hold a whole tag, so none is counted twice)."""
    count, carry = 0, b""
    with path.open("rb") as stream:
        while block := stream.read(chunk):
            data = carry + block
            count += data.count(record)
            carry = data[-(len(record) - 1) :]
    return count


def _load(directory: Path, spec: SampleSpec) -> DataSet | None:
    marker = directory / MARKER
    if not marker.is_file():
        return None
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("spec") != _marker_text(spec):
        return None
    files = []
    for entry in saved.get("files", []):
        path = directory / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            return None
        files.append(DataFile(path, entry["bytes"], entry["ticks"]))
    return DataSet(spec, directory, tuple(files)) if files else None


def ensure_data_set(spec: SampleSpec, cache: Path = DEFAULT_CACHE, log=print) -> DataSet:
    """The cached data set of `spec`, generated first if missing or stale."""
    directory = cache / data_key(spec)
    cached = _load(directory, spec)
    if cached is not None:
        log(f"data set: reusing {directory}")
        return cached
    log(
        f"data set: generating {spec.ticks_per_day:,} ticks, {spec.files_per_day} file(s), "
        f"`{spec.profile}` layout ..."
    )
    started = time.monotonic()
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    paths = generate(spec, partial)
    entries = [
        {"path": p.relative_to(partial).as_posix(), "bytes": p.stat().st_size}
        | {"ticks": count_records(p, RECORDS[spec.profile])}
        for p in sorted(paths)
    ]
    (partial / MARKER).write_text(
        json.dumps({"spec": _marker_text(spec), "files": entries}, indent=2) + "\n"
    )
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    loaded = _load(directory, spec)
    assert loaded is not None, f"{directory}: data set unreadable right after generation"
    expected = spec.days * spec.ticks_per_day
    if loaded.ticks != expected:
        raise RuntimeError(f"{directory}: counted {loaded.ticks:,} ticks, expected {expected:,}")
    log(f"data set: wrote {directory} ({loaded.bytes / 1e6:,.0f} MB)")
    return replace(loaded, generated_s=time.monotonic() - started)


def warm_page_cache(files: tuple[DataFile, ...], chunk: int = 1 << 24) -> None:
    """Read every file once, so no measurement pays for the first read from disk."""
    for file in files:
        with file.path.open("rb") as stream:
            while stream.read(chunk):
                pass
