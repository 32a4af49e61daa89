"""The YAML loader the project reads its own files with (input profiles, venue reference data):
PyYAML's safe loader, on libyaml's parser when PyYAML has it. Both files are read at every run's
start, and the pure-Python parser took about 40 ms of each run for the venues file."""

from typing import Any

import yaml

SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
