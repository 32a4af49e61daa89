"""Provision Superset for tickhouse, idempotently: the admin user, the Trino connection, the bar
datasets and the "Market bars" dashboard, all from the export bundle in infra/superset/assets.

Runs with the Superset venv's Python (infra/superset/superset calls it):

    provision.py import   apply the bundle (everything in it is overwritten by UUID)
    provision.py export   write the live database/datasets/charts/dashboard back to the bundle
    provision.py zip      the bundle as a zip on stdout (Superset's UI import, another server)

The bundle is Superset's own export format; only what differs per machine is replaced on the way
in (and normalised on the way out): the Trino URI and the Iceberg catalog/namespace.
"""

from __future__ import annotations

import io
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

ASSETS = Path(__file__).resolve().parent / "assets"
# What the checked-in bundle says; replaced by the environment's values on import.
BUNDLE_SCHEMA = "market"
BUNDLE_CATALOG = "iceberg"
BUNDLE_URI = "trino://superset@127.0.0.1:18080/iceberg"
KINDS = {"databases", "datasets", "charts", "dashboards", "queries"}


def settings() -> dict[str, str]:
    host = os.environ.get("TICKHOUSE_TRINO_HOST", "127.0.0.1")
    port = os.environ.get("TICKHOUSE_TRINO_PORT", "18080")
    catalog = os.environ.get("TICKHOUSE_TRINO_CATALOG", BUNDLE_CATALOG)
    return {
        "schema": os.environ.get("TICKHOUSE_NAMESPACE", BUNDLE_SCHEMA),
        "catalog": catalog,
        # The local Trino has no authentication; the user name only labels the queries.
        "uri": f"trino://superset@{host}:{port}/{catalog}",
        "admin_user": os.environ.get("TICKHOUSE_SUPERSET_ADMIN_USER", "admin"),
        "admin_password": os.environ.get("TICKHOUSE_SUPERSET_ADMIN_PASSWORD", "admin"),
    }


def load_bundle(cfg: dict[str, str]) -> dict[str, str]:
    """The bundle's YAML files, with the environment's Trino URI, catalog and schema."""
    contents = {}
    for path in sorted(ASSETS.rglob("*.yaml")):
        name = path.relative_to(ASSETS).as_posix()
        doc = yaml.safe_load(path.read_text())
        if name.startswith("databases/"):
            doc["sqlalchemy_uri"] = cfg["uri"]
        elif name.startswith("datasets/"):
            doc["schema"] = cfg["schema"]
            doc["catalog"] = cfg["catalog"]
        contents[name] = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return contents


def ensure_admin(cfg: dict[str, str]) -> Any:
    from superset import db, security_manager

    user = security_manager.find_user(username=cfg["admin_user"])
    role = security_manager.find_role("Admin")
    if user is None:
        user = security_manager.add_user(
            cfg["admin_user"], "Superset", "Admin", "admin@localhost", role, cfg["admin_password"]
        )
        if not user:
            raise SystemExit("could not create the Superset admin user")
    else:
        from werkzeug.security import check_password_hash

        # Keeps the password in step with the environment without logging or echoing it.
        if not check_password_hash(user.password, cfg["admin_password"]):
            security_manager.reset_password(user.id, cfg["admin_password"])
        if role not in user.roles:
            user.roles.append(role)
    db.session.commit()
    return user


def import_bundle() -> None:
    from superset.commands.importers.v1.assets import ImportAssetsCommand
    from superset.utils.core import override_user

    cfg = settings()
    admin = ensure_admin(cfg)
    contents = load_bundle(cfg)
    with override_user(admin):
        ImportAssetsCommand(contents).run()
    n = {kind: sum(k.startswith(kind) for k in contents) for kind in ("datasets/", "charts/")}
    print(
        f"provisioned: Trino connection ({cfg['catalog']}), {n['datasets/']} datasets in schema "
        f"{cfg['schema']}, {n['charts/']} charts, dashboard 'Market bars'"
    )


def _normalised(name: str, text: str) -> tuple[str, str]:
    doc = yaml.safe_load(text)
    if name.startswith("databases/"):
        doc["sqlalchemy_uri"] = BUNDLE_URI
    elif name.startswith("datasets/"):
        doc["schema"] = BUNDLE_SCHEMA
        doc["catalog"] = BUNDLE_CATALOG
    elif name == "metadata.yaml":
        doc.pop("timestamp", None)
    # Exports name charts and dashboards `<title>_<id>.yaml`; ids differ per machine.
    name = re.sub(r"_\d+\.yaml$", ".yaml", name)
    return name, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def export_bundle() -> None:
    from superset.commands.export.assets import ExportAssetsCommand
    from superset.utils.core import override_user

    admin = ensure_admin(settings())
    files = {}
    with override_user(admin):
        # File contents are produced lazily and need the user too.
        exported = [(n, c() if callable(c) else c) for n, c in ExportAssetsCommand().run()]
    for name, text in exported:
        # A zip export has a `<kind>_export_<timestamp>/` top folder; the command alone may not.
        head, _, rest = name.partition("/")
        relative = rest if rest and head not in KINDS else name
        if relative.startswith("queries/"):
            continue
        key, body = _normalised(relative, text)
        files[key] = body
    for old in ASSETS.rglob("*.yaml"):
        old.unlink()
    for key, body in files.items():
        target = ASSETS / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    print(f"exported {len(files)} files to {ASSETS}")


def bundle_zip() -> bytes:
    """The bundle as the zip Superset's UI imports (Settings → Import), for manual use."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in load_bundle(settings()).items():
            archive.writestr(f"tickhouse_assets/{name}", text)
    return buffer.getvalue()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in {"import", "export", "zip"}:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "zip":
        sys.stdout.buffer.write(bundle_zip())
        return 0
    from superset.app import create_app

    with create_app().app_context():
        import_bundle() if argv[1] == "import" else export_bundle()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
