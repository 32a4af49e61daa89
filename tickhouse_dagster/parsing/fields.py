"""A profile's field rules applied to the texts a reader found: the one place where a template
is composed, a fallback or default fills a gap, a required value is demanded and a feed code is
mapped. Both Python readers call it — the lxml reader with the texts it collected per path, the
compiled fast path with xml2arrow's columns — so the two cannot disagree on what a rule means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from tickhouse_dagster.parsing.profiles import PROFILE_COLUMNS, FieldPath, FieldRule, Profile


class BadValue(ValueError):
    """A value that does not convert to the contract: which column, which row, why."""

    def __init__(self, column: str, index: int, reason: str) -> None:
        self.column, self.index, self.reason = column, index, reason
        super().__init__(f"row {index}, {column}: {reason}")


ValueOf = Callable[[FieldPath], pa.Array]


def composed(rule: FieldRule, value_of: ValueOf) -> pa.Array:
    """The rule's value before fallback and default: its path's text, or its template's paths
    and literals joined (null where any path is missing)."""
    if not rule.is_template:
        (path,) = rule.parts
        assert isinstance(path, FieldPath)
        return value_of(path)
    pieces = [
        value_of(part) if isinstance(part, FieldPath) else pa.scalar(part, pa.string())
        for part in rule.parts
    ]
    return pc.binary_join_element_wise(*pieces, "")


def field_texts(profile: Profile, value_of: ValueOf, count: int) -> dict[str, pa.Array]:
    """Every profile column's text for `count` records (feed codes mapped); raises BadValue on
    the first record (then column) whose required value is missing or whose code is not in the
    map."""
    texts: dict[str, pa.Array] = {}
    problems: list[tuple[int, int, str, str]] = []  # (row, column order, column, reason)
    for order, name in enumerate(PROFILE_COLUMNS):
        rule = profile.fields.get(name)
        if rule is None:
            texts[name] = pa.nulls(count, pa.string())
            continue
        text = composed(rule, value_of)
        if rule.fallback_path is not None:
            text = pc.coalesce(text, value_of(rule.fallback_path))
        if rule.default is not None:
            text = text.fill_null(rule.default)
        if not rule.optional and text.null_count:
            row = pc.index(pc.is_null(text), True).as_py()
            reason = (
                f"required value missing (profile {profile.name!r} reads it from {rule.path!r})"
            )
            problems.append((row, order, name, reason))
        if rule.map is not None:
            codes = text
            text, unmapped = _mapped(codes, rule.map)
            if unmapped is not None:
                code = codes[unmapped].as_py()
                reason = f"{code!r} is not one of {', '.join(sorted(rule.map))}"
                problems.append((unmapped, order, name, reason))
        texts[name] = text
    if problems:
        row, _order, name, reason = min(problems)
        raise BadValue(name, row, reason)
    return texts


def _mapped(values: pa.Array, mapping: Mapping[str, str | None]) -> tuple[pa.Array, int | None]:
    """The mapped values, and the first row whose code is not in the map (None if all are)."""
    codes = pa.array(list(mapping), pa.string())
    index = pc.index_in(values, value_set=codes)
    outside = pc.and_(pc.is_null(index), pc.is_valid(values))
    first = pc.index(outside, True).as_py() if pc.any(outside).as_py() else None
    if first is not None and first < 0:
        first = None
    return pa.array(list(mapping.values()), pa.string()).take(index), first
