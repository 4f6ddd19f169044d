"""One end-to-end browser test: the real server, the real training subprocess, Debian's chromium.

Launch the smoke recipe from the Launch page, watch Monitor's loss chart gain points while it trains, stop it,
launch a second run with more replay, then open Compare and see the trade-off chart and the config diff.
"""
import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CPT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no chromium at {CHROMIUM}")


def statuses(home: Path) -> dict[str, str]:
    out = {}
    for p in home.glob("*/status.json"):
        try:
            out[p.parent.name] = json.loads(p.read_text())["status"]
        except (OSError, ValueError, KeyError):
            pass
    return out


def trace_points(page, trace: str) -> int:
    """Points in the drawn plotly trace named `trace` (0 if not drawn yet). Charts are found by their traces
    (Streamlit's theme moves titles out of plotly); _fullData holds the decoded arrays."""
    return page.evaluate("""(trace) => {
        for (const el of document.querySelectorAll('.js-plotly-plot')) {
            for (const d of (el._fullData || [])) if (d.name === trace && d.x) return d.x.length;
        }
        return 0;
    }""", trace)


def fill_number(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    settle(page)


def settle(page) -> None:
    """Wait until the app has finished its rerun (the status widget shows no 'Running...' twice in a row:
    a rerun triggered by the last input may not have shown it yet)."""
    for _ in range(2):
        page.wait_for_timeout(300)
        page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=60_000)


def click_launch(page) -> None:
    """Click Launch once the rerun is over: mid-rerun a moved button can show twice (stale copy and new one)."""
    settle(page)
    button = page.get_by_role("button", name="Launch", exact=True)
    wait_until(lambda: button.count() == 1, 30, "a single Launch button")
    button.click()


def choose_recipe_and_evals(page, url: str, steps: str) -> None:
    page.goto(f"{url}/Launch")
    page.get_by_text("Launch a run").wait_for(timeout=60_000)
    settle(page)
    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name="smoke.yaml", exact=True).click()
    settle(page)
    evals = page.get_by_test_id("stMultiSelect").first
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for name in ("domain_ppl", "replay_ppl"):
        chip = evals.get_by_text(name, exact=True)
        for _ in range(5):  # a rerun may redraw the widget under the cursor: check, retry
            if chip.count():
                break
            try:
                box = evals.locator("input")
                box.click()
                box.fill(name)
                page.get_by_role("option", name=name, exact=True).click(timeout=5_000)
                page.keyboard.press("Escape")
                settle(page)
                chip.wait_for(timeout=5_000)
            except PlaywrightTimeout:
                settle(page)
        assert chip.count(), f"could not select {name}"
    fill_number(page, "steps", steps)
    fill_number(page, "evaluate every N steps", "10")


def test_launch_watch_stop_launch_again_and_compare(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            journey(page, *server)
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)  # what the user would have seen
            raise
        finally:
            browser.close()


def journey(page, url: str, home: Path) -> None:
    """The newcomer's path through the dashboard."""
    page.goto(url)
    page.get_by_text("No runs yet").wait_for(timeout=60_000)

    # 1. the smoke recipe, long enough to watch, launched from the form
    choose_recipe_and_evals(page, url, "400")
    click_launch(page)
    page.wait_for_url("**/Monitor", timeout=30_000)
    first = wait_until(lambda: trace_points(page, "total"), 120, "the first training-loss points")
    more = wait_until(lambda: (n := trace_points(page, "total")) > first and n, 60,
                      "the live loss chart to gain points")
    assert more > first
    page.get_by_role("button", name="Stop").click()
    wait_until(lambda: "stopped" in statuses(home).values(), 120, "the run to stop")

    # 2. a second, short run with more replay
    choose_recipe_and_evals(page, url, "20")
    replay = page.get_by_role("slider").nth(1)
    for _ in range(10):  # +0.5 point each; the other two shrink to keep 100%
        replay.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(300)
    click_launch(page)
    page.wait_for_url("**/Monitor", timeout=30_000)
    wait_until(lambda: sorted(statuses(home).values()) == ["completed", "stopped"], 180,
               "the second run to complete")

    # 3. compare both
    page.goto(f"{url}/Compare")
    page.get_by_text("Trade-off: domain gain vs retention").first.wait_for(timeout=60_000)
    wait_until(lambda: trace_points(page, "Pareto frontier"), 60, "the trade-off chart's Pareto frontier")
    page.get_by_text("Config diff").wait_for()
    page.locator("[data-testid=stDataFrame]:visible").first.wait_for()  # the diff table (others sit in closed expanders)
    replays = [yaml.safe_load(c.read_text())["mix"]["replay"] for c in sorted(home.glob("*/config.yaml"))]
    assert len(replays) == 2 and replays[1] > replays[0]  # run ids sort by creation time
