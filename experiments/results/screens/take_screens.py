"""Screenshots of the dashboard as a newcomer sees it: Home, Monitor, Compare, Advisor and Launch at 1280x900.

    python experiments/results/screens/take_screens.py            (about a minute on 2 CPU cores)

Starts `streamlit run app.py` on a temporary CPT_HOME holding three runs written by tests/run_store.py (the same
metric stream, status and evaluation files training writes: a demo-like run, a forgetting one, a running one),
opens each page in Debian's chromium through Playwright and saves <page>.png next to this script. It also checks
that Home's default columns fit 1280 px without horizontal scrolling. Set CPT_CHROMIUM for another browser.
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


def main() -> int:
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
            shots = [  # name, address, what to wait for, what to scroll to the top (None: the page's top)
                ("home", url, "[data-testid=stDataFrame]", None),
                ("monitor", f"{url}/Monitor?run={ids['forgetting']}", ".js-plotly-plot", None),
                ("compare", f"{url}/Compare", ".js-plotly-plot", None),
                ("advisor", f"{url}/Advisor", "[data-testid=stMetric]", "Recommendation"),
                ("launch", f"{url}/Launch", "[data-testid=stDataFrame]", "Training"),
            ]
            for name, address, ready, top in shots:
                page.goto(address)
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


if __name__ == "__main__":
    raise SystemExit(main())
