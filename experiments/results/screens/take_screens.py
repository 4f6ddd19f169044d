"""Screenshots of the dashboard as a newcomer sees it: Home, Monitor (at the end and during an evaluation),
Compare, Advisor and Launch at 1280x900.

    python experiments/results/screens/take_screens.py            (all of them: about a minute on 2 CPU cores)
    python experiments/results/screens/take_screens.py monitor_evaluating home     (only these)

Starts `streamlit run app.py` on a temporary CPT_HOME holding three runs written by tests/run_store.py (the same
metric stream, status and evaluation files training writes: a demo-like run, a forgetting one, a running one),
opens each page in Debian's chromium through Playwright and saves <name>.png next to this script. For
monitor_evaluating it adds a fourth run at its step-0 evaluation (status.json's `evaluating`, written as
EvalCallback writes it; this script's process stands in for the training process). It also checks that Home's
default columns fit 1280 px without horizontal scrolling. Set CPT_CHROMIUM for another browser.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CHROMIUM = os.environ.get("CPT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}
MAX_BYTES = 300_000


def write_store(home: Path) -> dict[str, str]:
    """Three runs through the real Run/MetricWriter code: what Home, Monitor and Compare read."""
    sys.path.insert(0, str(ROOT / "tests"))
    from run_store import write_run  # noqa: E402 - the tests' store writer, not a test

    runs = {
        "demo": write_run(home, "demo", replay=0.15, lr=1e-4, domain_drop=0.3, if_drop=2.0),
        "forgetting": write_run(home, "demo-forgetting", replay=0.0, lr=1e-3, domain_drop=0.35, if_drop=12.0,
                                warning=True),
    }
    time.sleep(1.1)  # run ids carry the creation second: the running run is the newest
    runs["running"] = write_run(home, "more-replay", replay=0.3, lr=5e-5, domain_drop=0.15, if_drop=0.5,
                                status="running")
    return {k: r.id for k, r in runs.items()}


def evaluating_run(home: Path) -> str:
    """A run in its step-0 evaluation, 12 of 25 IFEval prompts done after domain_ppl and replay_ppl took 42 s and
    38 s; its process is this script (alive while the screenshot is taken). Written last: Compare's default pair
    (the two newest runs) stays the same whether this shot is taken or not."""
    from cptcore import supervise
    from cptcore.config import RunConfig
    from cptcore.runs import Run
    from cptcore.runs.metrics import MetricWriter

    evaluators = ["domain_ppl", "replay_ppl", "ifeval"]
    run = Run.create(home, RunConfig(name="demo-baseline").with_overrides(
        {"train.max_steps": 200, "eval.evaluators": evaluators}))
    MetricWriter(run.metrics_path).close()
    import psutil

    now = time.time()
    # started: when this process did (liveness takes a pid that started later than its run for a reused one)
    run.write_status("running", pid=os.getpid(), started=psutil.Process().create_time(), attempt=1, max_steps=200,
                     step=0)
    supervise.write_eval_status(run, {"phase": "baseline", "step": 0, "evaluator": "ifeval", "index": 3, "count": 3,
                                      "evaluators": evaluators, "done": 12, "total": 25, "started": now - 90,
                                      "evaluator_started": now - 10, "updated": now, "attempt": 1},
                                {"domain_ppl": 42.0, "replay_ppl": 38.0})
    return run.id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the dashboard did not start within {timeout:.0f} s")


def settle(page) -> None:
    """Wait until the app's rerun is over (no 'Running...' widget twice in a row), then let charts draw."""
    for _ in range(2):
        page.wait_for_timeout(400)
        page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=60_000)
    page.wait_for_timeout(800)


def shrink(path: Path) -> None:
    """Keep a screenshot under MAX_BYTES: palette PNG (screens are flat colours; text stays sharp)."""
    if path.stat().st_size <= MAX_BYTES:
        return
    from PIL import Image

    with Image.open(path) as im:
        im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def home_fits(page) -> dict:
    """Widths of Home's table: the grid's scrollable width vs its visible width (equal: no horizontal scroll)."""
    return page.evaluate("""() => {
        const grid = document.querySelector('[data-testid=stDataFrame]');
        const scroller = grid && grid.querySelector('.dvn-scroller');
        return scroller ? {scroll: scroller.scrollWidth, client: scroller.clientWidth} : {};
    }""")


def main(names: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="cpt-screens-"))
    home = tmp / "runs"
    ids = write_store(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, CPT_HOME=str(home), PYTHONUNBUFFERED="1")
    log = open(tmp / "streamlit.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(60_000)
            page.goto(url)  # a session that starts at Home, as a user's does (and as it is for every subset of shots)
            page.locator("[data-testid=stSidebarNav]").first.wait_for()
            settle(page)
            for name, address, ready, top in SHOTS:
                if names and name not in names:
                    continue
                page.goto(address(url, home, ids))
                page.locator(ready).first.wait_for()
                settle(page)
                if top:
                    page.get_by_role("heading", name=top, exact=True).first.evaluate(
                        "el => el.scrollIntoView({block: 'start'})")
                    page.wait_for_timeout(500)
                if name == "home":
                    fits = home_fits(page)
                    print(f"home table: scroll width {fits.get('scroll')} px, visible {fits.get('client')} px")
                    if fits and fits["scroll"] > fits["client"] + 1:
                        print("warning: Home's default columns need horizontal scrolling at 1280 px")
                path = HERE / f"{name}.png"
                page.screenshot(path=str(path))
                shrink(path)
                print(f"{path.relative_to(ROOT)}  {path.stat().st_size // 1000} KB")
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


SHOTS = [  # name, address (url, home, run ids), what to wait for, what to scroll to the top (None: the page's top)
    ("home", lambda url, home, ids: url, "[data-testid=stDataFrame]", None),
    ("monitor", lambda url, home, ids: f"{url}/Monitor?run={ids['forgetting']}", ".js-plotly-plot", None),
    ("compare", lambda url, home, ids: f"{url}/Compare", ".js-plotly-plot", None),
    ("advisor", lambda url, home, ids: f"{url}/Advisor", "[data-testid=stMetric]", "Recommendation"),
    ("launch", lambda url, home, ids: f"{url}/Launch", "[data-testid=stDataFrame]", "Training"),
    ("monitor_evaluating", lambda url, home, ids: f"{url}/Monitor?run={evaluating_run(home)}",
     ".st-key-monitor_now [data-testid=stProgress]", None),  # last: its run is the newest
]


if __name__ == "__main__":
    unknown = [n for n in sys.argv[1:] if n not in {s[0] for s in SHOTS}]
    if unknown:
        raise SystemExit(f"unknown screenshot {', '.join(unknown)}; choose from {', '.join(s[0] for s in SHOTS)}")
    raise SystemExit(main(sys.argv[1:]))
