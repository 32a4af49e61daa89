"""The Dagster UI in a real browser (Debian's Chromium driven by Playwright) against `dagster dev`:
the lineage graph draws raw XML → parsed ticks → ticks → bars with their edges, an asset's checks
are listed with their results, and a materialization launched from the UI succeeds. Screenshots
are saved under .tickhouse/test-artifacts/."""

from __future__ import annotations

import re

import pytest

from tickhouse_dagster_tests.ui.browser import chromium_page, screenshot
from tickhouse_dagster_tests.ui.test_dagster_dev import graphql, wait_for

pytestmark = pytest.mark.slow
RUNS = "{ runsOrError { ... on Runs { results { runId jobName status } } } }"
DONE = {"SUCCESS", "FAILURE", "CANCELED"}

# Nodes are HTML inside <foreignObject>; edges are <path>s from the right edge of the upstream
# node to the left edge of the downstream one, both at the node's vertical centre.
GRAPH_JS = """() => {
  const nodes = Array.from(document.querySelectorAll('foreignObject')).map(e => ({
    name: (e.textContent || '').match(/^[a-z0-9_]+/)?.[0] || '',
    x: +e.getAttribute('x'), y: +e.getAttribute('y'),
    w: +e.getAttribute('width'), h: +e.getAttribute('height'),
  })).filter(n => n.w === 320 && n.name);
  const edges = Array.from(document.querySelectorAll('svg path'))
    .filter(p => (p.getAttribute('stroke') || '').includes('lineage-edge'))
    .map(p => (p.getAttribute('d').match(/-?[0-9.]+/g) || []).map(Number))
    .filter(n => n.length >= 4)
    .map(n => [n[0], n[1], n[n.length - 2], n[n.length - 1]]);
  return {nodes, edges};
}"""


def lineage_edges(graph: dict) -> set[tuple[str, str]]:
    def node_at(x: float, y: float, side: str) -> str | None:
        for n in graph["nodes"]:
            edge_x = n["x"] + n["w"] if side == "right" else n["x"]
            if abs(edge_x - x) <= 12 and n["y"] <= y <= n["y"] + n["h"]:
                return n["name"]
        return None

    found = set()
    for x1, y1, x2, y2 in graph["edges"]:
        source, target = node_at(x1, y1, "right"), node_at(x2, y2, "left")
        if source and target:
            found.add((source, target))
    return found


def wait_until_idle(url: str) -> list[dict]:
    """The sample day ingested and its bars built by the sensors, no run still going."""

    def idle() -> list[dict] | None:
        data = graphql(url, RUNS)
        runs = data["runsOrError"]["results"] if data else []
        # The ingest runs build the bars of the days they touch (decision 1602).
        bars_built = any(
            r["jobName"] == "ingest_landing_batch" and r["status"] == "SUCCESS" for r in runs
        )
        return runs if bars_built and all(r["status"] in DONE for r in runs) else None

    return wait_for("the sample day's ingest and bars", idle, timeout=300)


def test_lineage_checks_and_materialize_from_the_ui(dagster_dev) -> None:
    url, _ = dagster_dev
    base = url.removesuffix("/graphql")
    wait_until_idle(url)

    with chromium_page(width=1700, height=1100) as page:
        # Dagster's one-time "join the community" dialog would cover the page.
        page.context.add_init_script("window.localStorage.setItem('communityNux', '1')")

        page.goto(f"{base}/assets/market/ticks?view=lineage&lineageScope=neighbors&lineageDepth=3")
        page.locator("foreignObject", has_text="ohlcv_5m").first.wait_for(timeout=90_000)
        page.locator("foreignObject", has_text="raw_tick_xml").first.wait_for()
        page.wait_for_load_state("networkidle")
        expected = {
            ("raw_tick_xml", "parsed_ticks"),
            ("parsed_ticks", "ticks"),
            ("ticks", "ohlcv_1m"),
            ("ticks", "ohlcv_5m"),
            ("ticks", "ohlcv_1h"),
            ("ticks", "ohlcv_1d"),
        }
        # The nodes can be drawn before the edges, or before the layout has settled: read the
        # graph until the edges join the nodes, for at most 30 s.
        edges: set[tuple[str, str]] = set()
        for _ in range(60):
            edges = lineage_edges(page.evaluate(GRAPH_JS))
            if expected <= edges:
                break
            page.wait_for_timeout(500)
        screenshot(page, "dagster-lineage")
        assert expected <= edges, edges

        page.goto(f"{base}/assets/staging/parsed_ticks?view=checks")
        # The list renders item by item: wait for both checks and their results.
        for name in ("session_and_tick_grid", "tick_values", "trade_key_conflicts", "Checks (3)"):
            page.get_by_text(name).first.wait_for()
        page.wait_for_load_state("networkidle")
        checks = page.inner_text("body")
        screenshot(page, "dagster-checks-parsed-ticks")
        assert "tick_values" in checks
        assert "Checks (3)" in checks
        assert "Passed" in checks or "Succeeded" in checks

        page.goto(f"{base}/assets/market/ohlcv_1d")
        page.get_by_role("button", name="Materialize…").first.click()
        dialog = page.locator("[role=dialog]", has_text="Launch runs to materialize").first
        # The dialog offers the last 90 days first; the sample day is older.
        dialog.get_by_text("Show all partitions").click()
        dialog.get_by_text("All time").wait_for()
        partitions = dialog.locator("input[placeholder]").first
        partitions.fill("2024-01-02")
        partitions.press("Enter")
        launch = dialog.get_by_role("button", name="Launch 1 run")
        try:
            launch.wait_for(timeout=20_000)
        except Exception:
            screenshot(page, "dagster-ui-launch-dialog-failed")
            raise AssertionError(f"no 'Launch 1 run':\n{page.inner_text('body')[-3000:]}") from None
        launch.click()
        toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}")).first
        toast.wait_for()
        prefix = re.search(r"[0-9a-f]{8}", toast.inner_text()).group(0)

        def finished() -> dict | None:
            runs = graphql(url, RUNS)["runsOrError"]["results"]
            run = next((r for r in runs if r["runId"].startswith(prefix)), None)
            return run if run and run["status"] in DONE else None

        run = wait_for(f"run {prefix}", finished, timeout=180)
        page.goto(f"{base}/runs/{run['runId']}")
        page.get_by_text("RUN_SUCCESS").first.wait_for(timeout=60_000)
        screenshot(page, "dagster-ui-launched-run")
        assert run["status"] == "SUCCESS", run
