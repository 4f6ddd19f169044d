"""One end-to-end browser test: the real server, the real training subprocess, Debian's chromium.

Launch the smoke recipe from the Launch page, watch Monitor's loss chart gain points while it trains (a zoom
survives the live refreshes; a warning arriving moves no chart), stop it, launch a second run with more replay,
then open Compare and see the trade-off chart and the config diff. Two short views on a written store: Monitor
following a step-0 evaluation's progress, and Home's deciding columns inside a 1280 px window.
"""
import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml

from conftest import wait_until
from cptcore import supervise
from cptcore.config import RunConfig
from cptcore.runs import Run
from cptcore.runs.metrics import MetricWriter
from run_store import write_run

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


def x_range(page, trace: str) -> list | None:
    """The drawn x-axis range of the chart holding the trace named `trace`."""
    return page.evaluate("""(trace) => {
        for (const el of document.querySelectorAll('.js-plotly-plot')) {
            for (const d of (el._fullData || [])) if (d.name === trace) return el._fullLayout.xaxis.range.slice();
        }
        return null;
    }""", trace)


def zoom_x(page, trace: str) -> list:
    """Zoom the chart holding `trace` to the middle half of its x range, as a drag would (Plotly.relayout on
    the element: the same relayout event)."""
    return page.evaluate("""async (trace) => {
        for (const el of document.querySelectorAll('.js-plotly-plot')) {
            for (const d of (el._fullData || [])) if (d.name === trace) {
                const [a, b] = el._fullLayout.xaxis.range;
                const range = [a + (b - a) / 4, a + 3 * (b - a) / 4];
                await window.Plotly.relayout(el, {'xaxis.range': range});
                return range;
            }
        }
        return null;
    }""", trace)


def warnings_shown(page) -> int | None:
    """1 + the n of Monitor's "Warnings (n)" label (None while it is not drawn): truthy from 0 warnings on."""
    label = page.evaluate("() => document.querySelector('.st-key-monitor_warnings summary')?.innerText || ''")
    m = re.search(r"Warnings \((\d+)\)", label)
    return 1 + int(m.group(1)) if m else None


def chart_offsets(page, keys=("loss_chart", "mix_chart", "baseline_chart")) -> dict:
    """Top of each main Monitor chart, from the top of the warnings area above them (what sits above that,
    the status block, may grow on its own)."""
    return page.evaluate("""(keys) => {
        const top = (el) => el.getBoundingClientRect().top + window.scrollY;
        const base = top(document.querySelector('.st-key-monitor_warnings'));
        const chart = (k) => document.querySelector('.st-key-' + k + ' .js-plotly-plot');
        return Object.fromEntries(keys.map(k => [k, top(chart(k)) - base]));
    }""", list(keys))


def inject_warning(home: Path, message: str) -> None:
    """Append an event/warning record to the live run's stream, as MetricWriter.event writes it: one O_APPEND
    write, so it never splits the training process's lines."""
    (path,) = home.glob("*/metrics.jsonl")
    last = json.loads(path.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1])
    rec = {"step": last["step"], "tokens": last["tokens"], "time": last["time"], "name": "event/warning",
           "value": None, "attempt": last.get("attempt", 1), "message": message, "metric": "eval/replay_ppl"}
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, (json.dumps(rec) + "\n").encode())
    finally:
        os.close(fd)


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

    # zoom the live loss chart: two refreshes later (two more points drawn) the view is the same
    zoomed = zoom_x(page, "total")
    assert x_range(page, "total") == pytest.approx(zoomed)
    wait_until(lambda: trace_points(page, "total") >= more + 2, 60, "two more training points")
    assert x_range(page, "total") == pytest.approx(zoomed)

    # a warning arrives: it shows in the warnings area, and no chart moves
    shown = wait_until(lambda: warnings_shown(page), 10, "the warnings area")
    before = chart_offsets(page)
    inject_warning(home, "general (replay) ppl -93.0 % drop (paired 95% CI -95.0 .. -90.0) from step 0")
    wait_until(lambda: (warnings_shown(page) or 0) > shown, 30, "the injected warning")
    settle(page)
    assert chart_offsets(page) == pytest.approx(before, abs=0.5)
    assert x_range(page, "total") == pytest.approx(zoomed)
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


# --- short views on a written store ------------------------------------------------------------
HOME_DECIDING = ("run", "status", "domain gain", "IF change", "general ppl change", "warnings", "mix %")  # app.py labels


def open_browser(p, viewport: dict):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(60_000)
    return browser, page


def evaluating_run(home: Path) -> Run:
    """A running run at step 0 whose process is this test (alive for the liveness check): what a launched run
    looks like while its step-0 evaluation runs, without waiting minutes for a real one."""
    run = Run.create(home, RunConfig(name="evaluating").with_overrides(
        {"train.max_steps": 20, "eval.evaluators": ["domain_ppl", "ifeval"]}))
    MetricWriter(run.metrics_path).close()
    run.write_status("running", pid=os.getpid(), started=time.time(), attempt=1, max_steps=20, step=0)
    return run


def report_evaluation(run: Run, done: int, total: int = 25) -> None:
    """status.json's `evaluating`, through the writer EvalCallback uses (ifeval, the second of two evaluators)."""
    now = time.time()
    supervise.write_eval_status(run, {"phase": "baseline", "step": 0, "evaluator": "ifeval", "index": 2, "count": 2,
                                      "evaluators": ["domain_ppl", "ifeval"], "done": done, "total": total,
                                      "started": now - 40, "evaluator_started": now - 30, "updated": now,
                                      "attempt": 1}, {"domain_ppl": 10.0})


def test_monitor_follows_the_step0_evaluation(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, home = server
    run = evaluating_run(home)
    report_evaluation(run, 12)
    with sync_api.sync_playwright() as p:
        browser, page = open_browser(p, {"width": 1280, "height": 900})
        try:
            page.goto(f"{url}/Monitor?run={run.id}")
            now = page.locator(".st-key-monitor_now")
            bar = now.get_by_text("evaluating ifeval 12/25 (step 0 baseline)", exact=True)
            sync_api.expect(bar).to_be_visible(timeout=60_000)
            # opened by its URL, the sidebar still lists Home first (not the entry script's name, "app")
            nav = page.locator('[data-testid="stSidebarNav"] a')
            sync_api.expect(nav.first).to_contain_text("Home")
            assert "app" not in [t.strip() for t in nav.all_inner_texts()]
            # the live panel follows the evaluation without a reload, and lets go of it when it ends
            report_evaluation(run, 20)
            sync_api.expect(now.get_by_text("evaluating ifeval 20/25 (step 0 baseline)", exact=True)).to_be_visible(
                timeout=30_000)
            supervise.write_eval_status(run, None)
            sync_api.expect(now.get_by_text("evaluating", exact=False)).to_have_count(0, timeout=30_000)
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def header_boxes(page) -> dict:
    """Left/right edges (window px) of the Home table's header cells, the grid's canvas and the page's scroll.
    The grid draws on a canvas: the widths come from its React props (glide-data-grid's columns, as drawn),
    placed from the canvas' left edge minus the grid's horizontal scroll."""
    return page.evaluate("""() => {
        const canvas = document.querySelector('[data-testid=stDataFrame] [data-testid=data-grid-canvas]');
        const key = Object.keys(canvas).find(k => k.startsWith('__reactFiber'));
        let fiber = canvas[key];
        while (fiber && !(Array.isArray(fiber.memoizedProps?.columns)
                          && fiber.memoizedProps.columns.every(c => typeof c.width === 'number'))) fiber = fiber.return;
        const scroller = canvas.closest('[data-testid=stDataFrame]').querySelector('.dvn-scroller');
        const box = canvas.getBoundingClientRect();
        let x = box.left - scroller.scrollLeft;
        const cells = {};
        for (const c of fiber ? fiber.memoizedProps.columns : []) {
            cells[c.title] = {left: x, right: x + c.width};
            x += c.width;
        }
        return {cells, canvas: {left: box.left, right: box.right}, grid_scroll: scroller.scrollWidth - scroller.clientWidth,
                page_scroll: document.documentElement.scrollWidth - document.documentElement.clientWidth};
    }""")


def test_home_shows_the_deciding_columns_at_1280_px(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, home = server
    # a long name (a 58-character run id): the run column is capped, so it cannot push the others off-screen
    write_run(home, "demo-forgetting-with-a-long-descriptive-name", replay=0.0, lr=1e-3, warning=True)
    with sync_api.sync_playwright() as p:
        browser, page = open_browser(p, {"width": 1280, "height": 900})
        try:
            page.goto(url)
            # the grid's accessible copy of its cells (a canvas draws them): column 1 of row 0 is the status
            status_cell = page.locator("[data-testid=stDataFrame] [data-testid=glide-cell-1-0]")
            sync_api.expect(status_cell).to_have_text("completed", timeout=60_000)
            settle(page)
            seen = header_boxes(page)
            cells = seen["cells"]
            assert list(cells)[:len(HOME_DECIDING)] == list(HOME_DECIDING), cells
            for label in HOME_DECIDING:
                assert 0 <= cells[label]["left"] and cells[label]["right"] <= 1280, (label, cells[label])
            assert seen["grid_scroll"] <= 1 and seen["page_scroll"] <= 1, seen  # nothing to scroll to
            assert sum(c["right"] - c["left"] for c in cells.values()) == pytest.approx(
                seen["canvas"]["right"] - seen["canvas"]["left"], abs=2)  # the widths read are the ones drawn
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def test_compare_mix_law_view_hover_budget_and_launch_this_mix(server, tmp_path):
    """A stored pilot group: the Mix law view draws pilots, laws and the recommendation; hovering a pilot point
    shows its run's config diff; a tighter budget moves the recommended share up; "Launch this mix" opens Launch
    on the pilot's config."""
    from run_store import write_pilot_group

    sync_api = pytest.importorskip("playwright.sync_api")
    url, home = server
    runs = write_pilot_group(home)
    with sync_api.sync_playwright() as p:
        browser, page = open_browser(p, {"width": 1280, "height": 900})
        try:
            page.goto(f"{url}/Compare")
            wait_until(lambda: trace_points(page, "general KL pilots") == 5, 90, "the Mix law chart's pilot points")
            settle(page)
            hover = page.evaluate("""() => {
                for (const el of document.querySelectorAll('.js-plotly-plot')) {
                    const i = (el._fullData || []).findIndex(d => d.name === 'general KL pilots');
                    if (i >= 0) {
                        window.Plotly.Fx.hover(el, [{curveNumber: i, pointNumber: 3}], el._fullData[i].xaxis + el._fullData[i].yaxis);
                        const label = el.querySelector('.hoverlayer');
                        return label ? label.textContent : '';
                    }
                }
                return null;
            }""")
            assert runs[3].id in hover and "mix.replay 0.4 (base 0.1)" in hover, hover
            assert trace_points(page, "recommended") == 1
            share = lambda: page.locator("[data-testid=stMetric]").filter(  # noqa: E731
                has_text="recommended replay share").locator("[data-testid=stMetricValue]").inner_text()
            wait_until(lambda: share() != "", 30, "the recommended share")
            before = float(share())
            fill_number(page, "largest KL (nats/token)", "0.03")
            wait_until(lambda: float(share()) > before, 30, "a higher replay share for a tighter KL budget")
            settle(page)
            page.get_by_role("button", name="Launch this mix").click()
            page.get_by_text("Launch a run").wait_for(timeout=60_000)
            settle(page)
            start = page.get_by_test_id("stSelectbox").first
            assert "pilot: pilot-fixture" in start.inner_text() + " ".join(
                start.locator("input").evaluate_all("els => els.map(e => e.value)")), start.inner_html()[:2000]
            saved = json.loads((home / "groups" / "pilot-fixture" / "mixlaw.json").read_text())
            assert saved["recommendations"][-1]["budget"] == {"eval/general_kl": 0.03}
            replay = page.get_by_test_id("stSlider").nth(1).inner_text()
            shown = float(re.search(r"\d+\.\d\d", replay).group())  # the sliders move in half points
            assert shown == pytest.approx(100 * saved["recommendations"][-1]["mix"]["replay"], abs=0.5), replay
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
