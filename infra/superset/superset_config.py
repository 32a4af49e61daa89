"""Superset configuration for the local tickhouse stack (loaded through SUPERSET_CONFIG_PATH by
infra/superset/superset; every value comes from the environment with a local-dev default)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

# superset.config imports this module at its end, after its own defaults are defined.
from superset.config import TALISMAN_CONFIG as _DEFAULT_TALISMAN_CONFIG

_HOME = Path(
    os.environ.get("TICKHOUSE_SUPERSET_HOME")
    or Path.home() / ".cache" / "tickhouse" / "superset" / "home"
)

# SQLite is enough for one local user; point this at PostgreSQL for anything shared.
SQLALCHEMY_DATABASE_URI = os.environ.get(
    "TICKHOUSE_SUPERSET_METADATA_URI", f"sqlite:///{_HOME / 'superset.db'}?check_same_thread=false"
)
SECRET_KEY = os.environ.get("SUPERSET_SECRET_KEY", "tickhouse-local-dev-only-superset-key")

# The candlestick chart is a Handlebars template drawing each bar with positioned <div>s (see
# docs/decisions/0701-superset-candlestick.md); the sanitizer keeps only the inline geometry and
# the hover text it needs, nothing else is widened.
HTML_SANITIZATION = True
HTML_SANITIZATION_SCHEMA_EXTENSIONS = {"attributes": {"div": ["style", "title"]}}
# Handlebars compiles its template with `new Function`, which the default Content Security Policy
# forbids ("Evaluating a string as JavaScript violates ... 'unsafe-eval'"); the rest of the policy
# stays as Superset ships it.
TALISMAN_CONFIG = copy.deepcopy(_DEFAULT_TALISMAN_CONFIG)
TALISMAN_CONFIG["content_security_policy"]["script-src"].append("'unsafe-eval'")

FEATURE_FLAGS = {
    "DASHBOARD_NATIVE_FILTERS": True,
    "ENABLE_TEMPLATE_PROCESSING": False,
}

# Local, loopback-only: no thumbnails or alerts workers, no Celery.
THUMBNAILS = False
ALERT_REPORTS = False
# Chart data is read fresh from Trino on every request; a cache would hide new bars.
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
ROW_LIMIT = 50000
SUPERSET_WEBSERVER_TIMEOUT = 120
WTF_CSRF_ENABLED = True
