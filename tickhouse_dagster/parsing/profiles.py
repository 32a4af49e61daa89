"""Input profiles: how one XML layout maps to the ticks columns. Profiles are data (YAML), so a
feed gets a profile by dropping a file into $TICKHOUSE_PROFILES_DIR, without code.

The profile language (documented in the README, "Input profiles"):
- a path reads one text from a record: `@a` (the record's attribute), `Child/@a`, `A/B/@a`,
  `Child` (its text), `/@a` (the root element's attribute); element names are local names,
  matched in any namespace;
- a step may pick one of repeated elements: `RptSide[2]` (by position, from 1) or
  `RptSide[@Side='1']` (the first whose attribute has that value); without a pick a path
  reads the first element it matches, in document order;
- `template: "{Instrmt/@ID}{Instrmt/@MMY}"` composes a field from paths and literal text
  (`{{` and `}}` are literal braces); it is missing when any of its paths is.

Everything is checked when a profile loads (`ProfileError` names the file, the field and the
reason), so a bad profile fails `tickhouse doctor` and every run before any file is read.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tickhouse_dagster.core.yaml_loader import SAFE_LOADER

PROFILES_DIR_ENV = "TICKHOUSE_PROFILES_DIR"
PROFILE_RULES_ENV = "TICKHOUSE_PROFILE_RULES"

log = logging.getLogger(__name__)

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
PROFILE_KEYS = frozenset({"name", "record", "root", "key_patterns", "record_parent", "fields"})
FIELD_KEYS = frozenset({"path", "template", "optional", "fallback", "default", "map"})


class ProfileError(ValueError):
    """A profile file that does not describe a usable layout, or no profile for a file."""


# --- paths ---------------------------------------------------------------------------------

_NAME = r"[A-Za-z_][\w.-]*"
_STEP = re.compile(
    rf"^(?P<name>{_NAME})"
    rf"(?:\[(?:(?P<position>[0-9]+)|@(?P<attr>{_NAME})\s*=\s*(?:'(?P<q1>[^'<&]*)'|\"(?P<q2>[^\"<&]*)\"))\])?$"
)
_ATTRIBUTE = re.compile(rf"^@(?P<name>{_NAME})$")


@dataclass(frozen=True)
class Step:
    """One element step of a path: a local name, and which of the repeated elements."""

    name: str
    position: int | None = None  # 1 = the first of that name
    where: tuple[str, str] | None = None  # (attribute, value): the first whose attribute is value

    def __str__(self) -> str:
        if self.position is not None:
            return f"{self.name}[{self.position}]"
        if self.where is not None:
            return f"{self.name}[@{self.where[0]}='{self.where[1]}']"
        return self.name


@dataclass(frozen=True)
class FieldPath:
    """A parsed path: `from_root` reads the root element's attribute; otherwise element steps
    from the record, then an attribute (or the last element's text when `attribute` is None)."""

    steps: tuple[Step, ...]
    attribute: str | None
    from_root: bool = False

    def __str__(self) -> str:
        parts = [str(step) for step in self.steps]
        if self.attribute is not None:
            parts.append(f"@{self.attribute}")
        return ("/" if self.from_root else "") + "/".join(parts)


def parse_path(text: str) -> FieldPath:
    """The path `text` means, or ValueError saying what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a path must be a non-empty string")
    if text != text.strip():
        raise ValueError(f"path {text!r} has leading or trailing spaces")
    if text.count("[") != text.count("]"):
        raise ValueError(f"path {text!r} has unbalanced brackets")
    from_root = text.startswith("/")
    body = text[1:] if from_root else text
    # Split on "/" outside brackets (a predicate's value may hold one).
    parts, depth, current = [], 0, ""
    for char in body:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "/" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    attribute = None
    last = _ATTRIBUTE.match(parts[-1])
    if last is not None:
        attribute = last["name"]
        parts = parts[:-1]
    steps = []
    for part in parts:
        match = _STEP.match(part)
        if match is None:
            hint = (
                ' (a template composes fields: template: "{A/@x}{B/@y}")'
                if "(" in part or "{" in part or "+" in part
                else ""
            )
            raise ValueError(
                f"path {text!r}: {part!r} is not an element step (Name, Name[2] or "
                f"Name[@attr='value']) nor a final @attribute{hint}"
            )
        position = None if match["position"] is None else int(match["position"])
        if position == 0:
            raise ValueError(f"path {text!r}: positions count from 1 ({part!r})")
        where = None
        if match["attr"] is not None:
            where = (match["attr"], match["q1"] if match["q1"] is not None else match["q2"])
        steps.append(Step(match["name"], position, where))
    if from_root and (steps or attribute is None):
        raise ValueError(f"root path {text!r}: only '/@attribute' is read from the root")
    if not steps and attribute is None:
        raise ValueError(f"path {text!r} reads nothing")
    return FieldPath(tuple(steps), attribute, from_root)


_TEMPLATE_PART = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]|[^{}]+")


def parse_template(text: str) -> tuple[str | FieldPath, ...]:
    """`"{Instrmt/@ID}-{Instrmt/@MMY}"` → (path, "-", path); ValueError when malformed."""
    if not isinstance(text, str) or not text:
        raise ValueError("a template must be a non-empty string")
    parts: list[str | FieldPath] = []
    for match in _TEMPLATE_PART.finditer(text):
        token = match[0]
        if token in ("{{", "}}"):
            literal = token[0]
        elif match[1] is not None:
            parts.append(parse_path(match[1].strip()))
            continue
        elif token in ("{", "}"):
            raise ValueError(f"template {text!r} has an unbalanced {token!r} (write {token * 2})")
        else:
            literal = token
        if parts and isinstance(parts[-1], str):
            parts[-1] += literal
        else:
            parts.append(literal)
    if not any(isinstance(part, FieldPath) for part in parts):
        raise ValueError(f"template {text!r} has no {{path}} (use 'default' for a constant)")
    return tuple(parts)


# --- profiles ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRule:
    """Where a column's text lives in a record, and how to read it."""

    path: str  # the path as written, or the template's text
    optional: bool = False
    fallback: str | None = None  # a second path tried when the first is absent
    default: str | None = None  # a constant used when both paths are absent
    map: Mapping[str, str | None] | None = None  # feed code -> contract value
    # The parts the value is made of: one path, or a template's paths and literal text.
    parts: tuple[str | FieldPath, ...] = ()
    fallback_path: FieldPath | None = None

    def __post_init__(self) -> None:
        # Rules built in code (tests, tools) give only `path`: parse it here.
        if not self.parts:
            object.__setattr__(self, "parts", (parse_path(self.path),))
        if self.fallback and self.fallback_path is None:
            object.__setattr__(self, "fallback_path", parse_path(self.fallback))

    @property
    def is_template(self) -> bool:
        return len(self.parts) != 1 or not isinstance(self.parts[0], FieldPath)

    def paths(self) -> list[FieldPath]:
        """Every path the rule reads: its parts', then the fallback's."""
        paths = [part for part in self.parts if isinstance(part, FieldPath)]
        return paths + ([self.fallback_path] if self.fallback_path is not None else [])


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
    source: str | None = None  # the file it was read from

    def matches_key(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.key_patterns)


def _where(source: str | None, profile: str | None, column: str | None = None) -> str:
    where = [source or "<profile>", f"profile {profile!r}" if profile else "profile ?"]
    if column is not None:
        where.append(f"field {column!r}")
    return ", ".join(where)


def _field_rule(source: str | None, profile: str, column: str, spec: Any) -> FieldRule:
    def refuse(reason: str) -> ProfileError:
        return ProfileError(f"{_where(source, profile, column)}: {reason}")

    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, dict):
        raise refuse(f"needs a path or a mapping with 'path' or 'template', not {spec!r}")
    unknown = sorted(set(spec) - FIELD_KEYS)
    if unknown:
        raise refuse(f"unknown keys {unknown} (known: {', '.join(sorted(FIELD_KEYS))})")
    if ("path" in spec) == ("template" in spec):
        raise refuse("needs exactly one of 'path' and 'template'")
    try:
        if "path" in spec:
            if not isinstance(spec["path"], str):
                raise ValueError(f"'path' must be a string, not {spec['path']!r}")
            text = spec["path"]
            parts: tuple[str | FieldPath, ...] = (parse_path(text),)
        else:
            text = spec["template"]
            parts = parse_template(text)
        fallback = spec.get("fallback")
        fallback_path = None if fallback is None else parse_path(fallback)
    except ValueError as exc:
        raise refuse(str(exc)) from None
    optional = spec.get("optional", False)
    if not isinstance(optional, bool):
        raise refuse(f"'optional' must be true or false, not {optional!r}")
    default = spec.get("default")
    if default is not None and not isinstance(default, str | int | float):
        raise refuse(f"'default' must be a text, not {default!r}")
    mapping = spec.get("map")
    if mapping is not None:
        if not isinstance(mapping, dict) or not mapping:
            raise refuse(
                f"'map' must be a non-empty mapping of feed code to value, not {mapping!r}"
            )
        for code, value in mapping.items():
            if isinstance(code, dict | list) or code is None:
                raise refuse(f"map code {code!r} is not a text")
            if value is not None and not isinstance(value, str | int | float):
                raise refuse(f"map value {value!r} (for {code!r}) is not a text or null")
        mapping = {str(k): None if v is None else str(v) for k, v in mapping.items()}
    return FieldRule(
        path=str(text),
        optional=optional,
        fallback=fallback,
        default=None if default is None else str(default),
        map=mapping,
        parts=parts,
        fallback_path=fallback_path,
    )


def profile_from_mapping(spec: Any, source: str | None = None) -> Profile:
    """The profile `spec` describes, or ProfileError naming `source`, the field and why."""
    if not isinstance(spec, Mapping):
        raise ProfileError(f"{source or '<profile>'}: not a profile (a YAML mapping is needed)")
    name = spec.get("name")
    missing_keys = [key for key in ("name", "record", "fields") if not spec.get(key)]
    if missing_keys:
        raise ProfileError(
            f"{_where(source, name)}: not a profile: needs 'name', 'record' and 'fields' "
            f"(missing {', '.join(missing_keys)}; has {', '.join(map(str, spec)) or 'nothing'})"
        )
    name = str(name)
    unknown_keys = sorted(set(map(str, spec)) - PROFILE_KEYS)
    if unknown_keys:
        raise ProfileError(
            f"{_where(source, name)}: unknown keys {unknown_keys} "
            f"(known: {', '.join(sorted(PROFILE_KEYS))})"
        )
    record = spec["record"]
    if not isinstance(record, str) or not re.fullmatch(_NAME, record):
        raise ProfileError(
            f"{_where(source, name)}: 'record' must be an element name, not {record!r}"
        )
    root = spec.get("root") or ()
    root = (root,) if isinstance(root, str) else root
    if not isinstance(root, list | tuple) or not all(
        isinstance(r, str) and re.fullmatch(_NAME, r) for r in root
    ):
        raise ProfileError(f"{_where(source, name)}: 'root' must be element names, not {root!r}")
    patterns = spec.get("key_patterns") or ()
    if not isinstance(patterns, list | tuple) or not all(isinstance(p, str) for p in patterns):
        raise ProfileError(
            f"{_where(source, name)}: 'key_patterns' must be a list of patterns, not {patterns!r}"
        )
    if not isinstance(spec["fields"], Mapping):
        raise ProfileError(f"{_where(source, name)}: 'fields' must map columns to paths")
    fields = {}
    for column, rule in spec["fields"].items():
        if column not in PROFILE_COLUMNS:
            raise ProfileError(
                f"{_where(source, name, column)}: not a ticks column "
                f"(known: {', '.join(PROFILE_COLUMNS)})"
            )
        fields[column] = _field_rule(source, name, column, rule)
    missing = [c for c in PROFILE_COLUMNS if c not in OPTIONAL_COLUMNS and c not in fields]
    if missing:
        raise ProfileError(
            f"{_where(source, name)}: missing required fields {missing} (every profile maps "
            f"{', '.join(c for c in PROFILE_COLUMNS if c not in OPTIONAL_COLUMNS)})"
        )
    for column, rule in fields.items():
        if rule.optional and column not in OPTIONAL_COLUMNS:
            raise ProfileError(
                f"{_where(source, name, column)}: cannot be optional (the contract requires it)"
            )
    return Profile(
        name=name,
        record=record,
        root=tuple(root),
        key_patterns=tuple(patterns),
        fields=fields,
        record_parent=spec.get("record_parent"),
        source=source,
    )


def _is_venue_data(spec: Any) -> bool:
    """A venues file (`market/venues.yaml` layout: venue name → {timezone, sessions, ...})."""
    return (
        isinstance(spec, Mapping)
        and bool(spec)
        and not {"record", "fields"} & set(spec)
        and all(isinstance(v, Mapping) and "timezone" in v for v in spec.values())
    )


def _read_profile_file(path: Path | Any) -> Profile | None:
    """The profile in `path`, None for a venues file (skipped, with a note in the log)."""
    try:
        spec = yaml.load(path.read_text(), Loader=SAFE_LOADER)
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not a profile: unreadable YAML ({exc})") from None
    if _is_venue_data(spec):
        log.warning(skipped_note(path))
        return None
    return profile_from_mapping(spec, str(path))


def skipped_note(path: Path | Any) -> str:
    return (
        f"{path}: venue reference data, not a profile: skipped (point TICKHOUSE_VENUES_FILE "
        "at it to use it)"
    )


def profile_files(extra_dir: str | Path | None = None) -> list[Path | Any]:
    """Built-in profile files, then every `*.yaml` / `*.yml` in `extra_dir` (the wiring layer
    passes TICKHOUSE_PROFILES_DIR)."""
    builtin = resources.files(__package__).joinpath("profiles")
    files: list[Path | Any] = [f for f in builtin.iterdir() if f.name.endswith(".yaml")]
    if extra_dir:
        folder = Path(extra_dir)
        if not folder.is_dir():
            raise ProfileError(f"{folder}: the profiles folder ({PROFILES_DIR_ENV}) does not exist")
        files += sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    return files


def load_profiles(extra_dir: str | Path | None = None) -> dict[str, Profile]:
    """Built-in profiles plus every profile file in `extra_dir` (default
    $TICKHOUSE_PROFILES_DIR); a user profile with a built-in's name replaces it. A venues file
    there is skipped (logged); any other file that is not a valid profile is refused, named."""
    profiles: dict[str, Profile] = {}
    seen: dict[str, str] = {}
    for file in profile_files(extra_dir):
        profile = _read_profile_file(file)
        if profile is None:
            continue
        builtin = seen.get(profile.name, "").startswith(str(Path(__file__).parent))
        if profile.name in seen and not builtin:
            raise ProfileError(
                f"{file}: profile {profile.name!r} is already defined in {seen[profile.name]}"
            )
        seen[profile.name] = str(file)
        profiles[profile.name] = profile
    return profiles


def skipped_profile_files(extra_dir: str | Path | None = None) -> list[str]:
    """Notes on the files of the profiles folder that were skipped (venues files)."""
    notes = []
    for file in profile_files(extra_dir):
        try:
            spec = yaml.load(file.read_text(), Loader=SAFE_LOADER)
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            continue
        if _is_venue_data(spec):
            notes.append(skipped_note(file))
    return notes


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


def _how_to_choose(key: str) -> str:
    return (
        f"choose one with --profile NAME, a rule in {PROFILE_RULES_ENV} "
        f"(e.g. '{key.rpartition('/')[0] or '*'}/*=NAME'), or give the profile you mean "
        "key_patterns that match this key"
    )


def _claimants(profiles: list[Profile]) -> str:
    return ", ".join(f"{p.name!r} ({p.source or 'built-in'})" for p in profiles)


def select_profile(
    key: str,
    root_element: str | None,
    profiles: Mapping[str, Profile],
    *,
    forced: str | None = None,
    rules: tuple[tuple[str, str], ...] = (),
) -> Profile:
    """The profile of a landing file: forced by the user, else the first key rule, else a
    profile's own key pattern, else the profile that names the file's root element. Two
    profiles that claim the file at the same level are an error naming both."""

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
    if len(by_key) > 1:
        raise ProfileError(
            f"{key}: {len(by_key)} profiles claim this file by key_patterns: "
            f"{_claimants(by_key)}; {_how_to_choose(key)}"
        )
    by_root = [p for p in profiles.values() if root_element in p.root]
    if len(by_root) == 1:
        return by_root[0]
    if root_element is None:
        raise ProfileError(
            f"{key}: malformed XML: no root element readable at the start of the file "
            "(empty, truncated, corrupt or not XML)"
        )
    if len(by_root) > 1:
        raise ProfileError(
            f"{key}: {len(by_root)} profiles claim root element <{root_element}>: "
            f"{_claimants(by_root)}; {_how_to_choose(key)}"
        )
    raise ProfileError(
        f"{key}: no profile recognises this file (root element <{root_element}>); "
        f"known profiles: {', '.join(sorted(profiles))}; force one with --profile or add a rule "
        f"to {PROFILE_RULES_ENV}"
    )
