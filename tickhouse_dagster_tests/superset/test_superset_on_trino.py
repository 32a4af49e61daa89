"""Superset as a user gets it from `infra/superset/superset up`, on the real stack: the provisioned
charts' data through Superset's own API equals what Trino returns (also with the dashboard's
venue/symbol/date filters applied), and the "Market bars" dashboard renders its candlesticks and
volume bars in headless Chromium, with no error panel."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from tickhouse_dagster.cli.devserver import free_port
from tickhouse_dagster.settings import PROJECT_ROOT
from tickhouse_dagster_tests.superset.sample_on_stack import (
    drop_namespace,
    load_sample,
    stack_settings,
)
from tickhouse_dagster_tests.ui.browser import chromium_page, screenshot

pytestmark = pytest.mark.slow
SUPERSET = PROJECT_ROOT / "infra" / "superset" / "superset"
CANDLES, VOLUME = "Candles (5m)", "Volume (5m)"
VERSION_OF_SUPERSET = "import importlib.metadata as m; print(m.version('apache-superset'))"


@dataclass
class Superset:
    url: str
    user: str
    password: str
    namespace: str
    trino: dict[str, str]

    def api(self) -> requests.Session:
        session = requests.Session()
        login = session.post(
            f"{self.url}/api/v1/security/login",
            json={"username": self.user, "password": self.password, "provider": "db"},
            timeout=30,
        )
        assert login.ok, login.text
        session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        csrf = session.get(f"{self.url}/api/v1/security/csrf_token/", timeout=30)
        session.headers.update({"X-CSRFToken": csrf.json()["result"], "Referer": self.url})
        return session

    def charts(self, session: requests.Session) -> dict[str, dict]:
        listing = session.get(f"{self.url}/api/v1/chart/?q=(page_size:100)", timeout=30).json()
        return {c["slice_name"]: c for c in listing["result"]}

    def query(self, sql: str) -> list[tuple]:
        import trino

        connection = trino.dbapi.connect(
            host=self.trino["TICKHOUSE_TRINO_HOST"],
            port=int(self.trino["TICKHOUSE_TRINO_PORT"]),
            user="tickhouse-test",
            catalog=self.trino["TICKHOUSE_TRINO_CATALOG"],
            schema=self.namespace,
        )
        cursor = connection.cursor()
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]


@pytest.fixture(scope="module")
def superset(stack_env: dict[str, str], tmp_path_factory) -> Iterator[Superset]:
    tmp = tmp_path_factory.mktemp("superset")
    namespace = f"market_s{uuid.uuid4().hex[:8]}"
    env = stack_settings(stack_env, namespace, tmp / "home")
    port = free_port()
    user, password = "tickhouse-test", secrets.token_urlsafe(16)
    superset_env = {
        **env,
        "TICKHOUSE_SUPERSET_HOME": str(tmp / "superset"),
        "TICKHOUSE_SUPERSET_PORT": str(port),
        "TICKHOUSE_SUPERSET_ADMIN_USER": user,
        "TICKHOUSE_SUPERSET_ADMIN_PASSWORD": password,
    }
    log_path = tmp / "superset-up.log"
    # Superset installs, provisions and starts while the sample day is ingested: neither needs
    # the other until the charts are queried.
    with log_path.open("w") as log:
        up = subprocess.Popen(
            [str(SUPERSET), "up"], env=superset_env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        load_sample(env)
        assert up.wait(timeout=1500) == 0, f"superset up failed:\n{log_path.read_text()[-4000:]}"
        yield Superset(f"http://127.0.0.1:{port}", user, password, namespace, env)
    finally:
        if up.poll() is None:
            up.kill()
        subprocess.run(
            [str(SUPERSET), "down"], env=superset_env, capture_output=True, timeout=60, check=False
        )
        drop_namespace(env)


def epoch_ms(value: datetime) -> int:
    """Superset sends a timestamp without zone as epoch milliseconds of that wall-clock time."""
    return round(value.replace(tzinfo=UTC).timestamp() * 1000)


def as_float(value: Decimal | int) -> float:
    return float(value)


def chart_data(session: requests.Session, base: str, chart_id: int) -> list[dict]:
    response = session.get(f"{base}/api/v1/chart/{chart_id}/data/", timeout=120)
    assert response.ok, response.text[-2000:]
    return response.json()["result"][0]["data"]


def test_chart_data_api_equals_trino(superset: Superset) -> None:
    session = superset.api()
    charts = superset.charts(session)
    assert {CANDLES, VOLUME} <= set(charts)

    # Candles: every 5m bar's OHLC and volume as Superset serves it to the chart.
    candles = chart_data(session, superset.url, charts[CANDLES]["id"])
    expected = {
        (v, s, epoch_ms(t), *map(as_float, (o, h, lo, c)), vol)
        for v, s, t, o, h, lo, c, vol in superset.query(
            "SELECT venue, symbol, bar_start_local, open, high, low, close, volume "
            "FROM ohlcv_5m_local"
        )
    }
    columns = ("venue", "symbol", "bar_start_local", "open", "high", "low", "close", "volume")
    got = {tuple(r[c] for c in columns) for r in candles}
    assert len(expected) > 100
    assert len(candles) == len(expected)
    assert got == expected
    # The geometry the template draws: the body inside the wick, both inside the panel.
    for r in candles:
        wick_top = r["wick_bottom_pct"] + r["wick_height_pct"]
        assert -1e-6 <= r["wick_bottom_pct"] <= r["body_bottom_pct"] + 1e-6
        assert r["body_bottom_pct"] + r["body_height_pct"] <= wick_top + 1e-6 <= 100 + 2e-6
        assert 0 <= r["x_pct"] < 100

    # Volume: the pivoted series (one column per symbol) against Trino's sums.
    volume = chart_data(session, superset.url, charts[VOLUME]["id"])
    expected_volume = {
        (epoch_ms(t), s): v
        for t, s, v in superset.query(
            "SELECT bar_start_local, symbol, sum(volume) FROM ohlcv_5m_local GROUP BY 1, 2"
        )
    }
    got_volume = {
        (row["bar_start_local"], symbol): value
        for row in volume
        for symbol, value in row.items()
        if symbol != "bar_start_local" and value is not None and value == value
    }
    assert got_volume == expected_volume

    # The dashboard's filters as Superset applies them: one symbol, a venue, a date range.
    symbol = sorted({r["symbol"] for r in candles})[1]
    detail = session.get(f"{superset.url}/api/v1/chart/{charts[CANDLES]['id']}", timeout=30)
    context = json.loads(detail.json()["result"]["query_context"])
    query = context["queries"][0]
    query["filters"] = [
        {"col": "venue", "op": "IN", "val": ["KRX"]},
        {"col": "symbol", "op": "IN", "val": [symbol]},
        {
            "col": "bar_start_local",
            "op": "TEMPORAL_RANGE",
            "val": "2024-01-02T10:00:00 : 2024-01-02T11:00:00",
        },
    ]
    filtered = session.post(f"{superset.url}/api/v1/chart/data", json=context, timeout=120)
    assert filtered.ok, filtered.text[-2000:]
    rows = filtered.json()["result"][0]["data"]
    expected_filtered = {
        (epoch_ms(t), as_float(c))
        for t, c in superset.query(
            "SELECT bar_start_local, close FROM ohlcv_5m_local WHERE venue = 'KRX' AND "
            f"symbol = '{symbol}' AND bar_start_local >= TIMESTAMP '2024-01-02 10:00:00' "
            "AND bar_start_local < TIMESTAMP '2024-01-02 11:00:00'"
        )
    }
    assert len(expected_filtered) == 12
    assert {(r["bar_start_local"], r["close"]) for r in rows} == expected_filtered
    # The candle geometry is rescaled to the filtered bars (the window functions run after WHERE).
    assert min(r["x_pct"] for r in rows) == 0
    assert min(r["wick_bottom_pct"] for r in rows) == pytest.approx(0)
    assert max(r["wick_bottom_pct"] + r["wick_height_pct"] for r in rows) == pytest.approx(100)

    dashboard = session.get(f"{superset.url}/api/v1/dashboard/market-bars", timeout=30).json()
    filters = json.loads(dashboard["result"]["json_metadata"])["native_filter_configuration"]
    assert {
        (f["filterType"], (f["targets"][0].get("column") or {}).get("name")) for f in filters
    } == {("filter_select", "venue"), ("filter_select", "symbol"), ("filter_time", None)}


def test_dashboard_renders_in_chromium(superset: Superset) -> None:
    session = superset.api()
    charts = superset.charts(session)
    bars = superset.query("SELECT count(*), count(DISTINCT symbol) FROM ohlcv_5m_local")[0]
    statuses: list[tuple[str, int]] = []
    with chromium_page(height=1200) as page:
        page.on(
            "response",
            lambda r: statuses.append((r.url, r.status)) if "/api/v1/chart/data" in r.url else None,
        )
        page.goto(f"{superset.url}/login/")
        page.fill("#username", superset.user)
        page.fill("#password", superset.password)
        page.click("[data-test=login-button]")
        page.wait_for_url(lambda url: "/login" not in url)
        page.goto(f"{superset.url}/superset/dashboard/market-bars/")

        candles = page.locator(
            f".dashboard-chart-id-{charts[CANDLES]['id']} div[title*=' O '][title*=' C ']"
        )
        # One drawn candle (wick + body) per 5m bar in Trino, one panel per symbol.
        page.wait_for_function(
            "([sel, n]) => document.querySelectorAll(sel).length === n",
            arg=[
                f".dashboard-chart-id-{charts[CANDLES]['id']} div[title*=' O '][title*=' C ']",
                bars[0],
            ],
            timeout=120_000,
        )
        assert candles.count() == bars[0]
        assert candles.first.locator("div").count() == 2
        volume_canvas = page.locator(f".dashboard-chart-id-{charts[VOLUME]['id']} canvas").first
        volume_canvas.wait_for(state="visible", timeout=120_000)
        page.wait_for_load_state("networkidle")
        painted = volume_canvas.evaluate(
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                      let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                      return n; }"""
        )
        path = screenshot(page, "superset-market-bars")

        text = page.inner_text("body")
        errors = page.locator(".ant-alert-error, [data-test='error-message'], .error-message")
        assert errors.count() == 0, errors.all_inner_texts()
        for marker in ("Unexpected error", "Content Security Policy", "No results"):
            assert marker not in text
        assert painted > 1000, "the volume chart's canvas is blank"
        for header in (CANDLES, VOLUME, "Venue", "Symbol"):
            assert header in text
        assert text.count("KRX ") >= bars[1]
    assert statuses and all(status == 200 for _, status in statuses), statuses
    assert path.stat().st_size > 10_000
    assert os.access(path, os.R_OK)


def test_superset_venv_is_its_own(superset: Superset) -> None:
    """Superset lives in its own virtual environment, not the project's."""
    cache = Path(os.environ.get("TICKHOUSE_CACHE", Path.home() / ".cache" / "tickhouse"))
    superset_python = cache / "superset" / "venv" / "bin" / "python"
    assert superset_python.exists()
    version = subprocess.run(
        [str(superset_python), "-c", VERSION_OF_SUPERSET],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    locked = (PROJECT_ROOT / "infra/superset/requirements.lock").read_text()
    assert f"apache-superset=={version}\n" in locked
    project = subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/python"), "-c", "import superset"],
        capture_output=True,
        check=False,
    )
    assert project.returncode != 0
