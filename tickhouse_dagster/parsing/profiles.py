"""Input profiles: how one XML layout maps to the ticks columns. Profiles are data (YAML), so a
feed gets a profile by dropping a file into $TICKHOUSE_PROFILES_DIR, without code."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PROFILES_DIR_ENV = "TICKHOUSE_PROFILES_DIR"
PROFILE_RULES_ENV = "TICKHOUSE_PROFILE_RULES"

# Columns a profile maps; trade_date, side and trans_type (new / cancel / replace) may be absent
# from a feed.
PROFILE_COLUMNS = (
    "venue",
    "symbol",
    "trade_date",
    "ts",
    "trade_id",
    "price",
    "quantity",
    "side",
    "trans_type",
)
OPTIONAL_COLUMNS = frozenset({"trade_date", "side", "trans_type"})


class ProfileError(ValueError):
    """A profile file that does not describe a usable layout, or no profile for a file."""


@dataclass(frozen=True)
class FieldRule:
    """Where a column's text lives in a record, and how to read it."""

    path: str
    optional: bool = False
    fallback: str | None = None  # a second path tried when the first is absent
    default: str | None = None  # a constant used when both paths are absent
    map: Mapping[str, str | None] | None = None  # feed code -> contract value


@dataclass(frozen=True)
class Profile:
    name: str
    record: str  # local name of the record element
    root: tuple[str, ...] = ()  # local names of root elements that identify the layout
    key_patterns: tuple[str, ...] = ()  # fnmatch patterns on landing keys
    # Absolute path of the element whose children are the records (e.g. "/tickhouse"). Read by
    # nothing now: the compiled fast path finds the records' path in each file (it varies, e.g.
    # FIXML with or without <Batch>); still accepted so profile files that set it keep loading.
    record_parent: str | None = None
    fields: Mapping[str, FieldRule] = field(default_factory=dict)

    def matches_key(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.key_patterns)


def _field_rule(profile: str, column: str, spec: Any) -> FieldRule:
    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, dict) or "path" not in spec:
        raise ProfileError(f"profile {profile!r}: field {column!r} needs a 'path'")
    unknown = set(spec) - {"path", "optional", "fallback", "default", "map"}
    if unknown:
        raise ProfileError(f"profile {profile!r}: field {column!r} has unknown keys {unknown}")
    mapping = spec.get("map")
    return FieldRule(
        path=str(spec["path"]),
        optional=bool(spec.get("optional", False)),
        fallback=spec.get("fallback"),
        default=None if spec.get("default") is None else str(spec["default"]),
        map=None if mapping is None else {str(k): v for k, v in mapping.items()},
    )


def profile_from_mapping(spec: Mapping[str, Any]) -> Profile:
    name = spec.get("name")
    if not name or "record" not in spec or "fields" not in spec:
        raise ProfileError(f"profile {name or '?'}: needs 'name', 'record' and 'fields'")
    fields = {col: _field_rule(name, col, rule) for col, rule in spec["fields"].items()}
    unknown = set(fields) - set(PROFILE_COLUMNS)
    missing = set(PROFILE_COLUMNS) - OPTIONAL_COLUMNS - set(fields)
    if unknown or missing:
        raise ProfileError(
            f"profile {name!r}: unknown columns {sorted(unknown)}, "
            f"missing columns {sorted(missing)}"
        )
    not_optional = [c for c, r in fields.items() if r.optional and c not in OPTIONAL_COLUMNS]
    if not_optional:
        raise ProfileError(f"profile {name!r}: columns {not_optional} are required by the contract")
    root = spec.get("root") or ()
    return Profile(
        name=str(name),
        record=str(spec["record"]),
        root=(root,) if isinstance(root, str) else tuple(root),
        key_patterns=tuple(spec.get("key_patterns") or ()),
        fields=fields,
        record_parent=spec.get("record_parent"),
    )


def _read_profile_file(path: Path | Any) -> Profile:
    try:
        return profile_from_mapping(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, AttributeError) as exc:
        raise ProfileError(f"{path}: not a profile ({exc})") from exc


def load_profiles(extra_dir: str | Path | None = None) -> dict[str, Profile]:
    """Built-in profiles plus every `*.yaml` in `extra_dir` (default $TICKHOUSE_PROFILES_DIR);
    a user profile with a built-in's name replaces it."""
    builtin = resources.files(__package__).joinpath("profiles")
    files = [f for f in builtin.iterdir() if f.name.endswith(".yaml")]
    extra_dir = extra_dir or os.environ.get(PROFILES_DIR_ENV)
    if extra_dir:
        files += sorted(Path(extra_dir).glob("*.yaml"))
    profiles = {}
    for file in files:
        profile = _read_profile_file(file)
        profiles[profile.name] = profile
    return profiles


def parse_profile_rules(text: str | None) -> tuple[tuple[str, str], ...]:
    """`"vendor_a/*=vendor_a, *.fix.xml=fixml"` → ((pattern, profile), ...), first match wins."""
    rules = []
    for item in (text or "").replace(";", ",").split(","):
        if item.strip():
            pattern, sep, profile = item.partition("=")
            if not sep or not pattern.strip() or not profile.strip():
                raise ProfileError(f"profile rule {item.strip()!r} is not 'pattern=profile'")
            rules.append((pattern.strip(), profile.strip()))
    return tuple(rules)


def select_profile(
    key: str,
    root_element: str | None,
    profiles: Mapping[str, Profile],
    *,
    forced: str | None = None,
    rules: tuple[tuple[str, str], ...] = (),
) -> Profile:
    """The profile of a landing file: forced by the user, else the first key rule, else a
    profile's own key pattern, else the profile that names the file's root element."""

    def named(name: str, why: str) -> Profile:
        if name not in profiles:
            raise ProfileError(
                f"{key}: unknown profile {name!r} ({why}); known: {', '.join(sorted(profiles))}"
            )
        return profiles[name]

    if forced:
        return named(forced, "forced")
    for pattern, name in rules:
        if fnmatch.fnmatchcase(key, pattern):
            return named(name, f"rule {pattern}={name}")
    by_key = [p for p in profiles.values() if p.matches_key(key)]
    if len(by_key) == 1:
        return by_key[0]
    by_root = [p for p in profiles.values() if root_element in p.root]
    if len(by_root) == 1:
        return by_root[0]
    if root_element is None:
        raise ProfileError(
            f"{key}: malformed XML: no root element readable at the start of the file "
            "(empty, truncated, corrupt or not XML)"
        )
    raise ProfileError(
        f"{key}: no profile recognises this file (root element <{root_element}>); "
        f"known profiles: {', '.join(sorted(profiles))}; force one with --profile or add a rule "
        f"to {PROFILE_RULES_ENV}"
    )
