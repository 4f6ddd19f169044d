"""Screenshot of Compare's Mix law view on a real pilot group (compare_mixlaw.png, 1280x1300).

    python experiments/results/screens/take_mixlaw_screen.py CPT_HOME     (e.g. the home validate_mixlaw.py ran in)

Unlike take_screens.py it reads an existing CPT_HOME: the view is worth showing on real pilot runs, not fixtures.
The newest pilot group of that home is the one drawn, with the page's default objective and budget.
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import take_screens as T  # noqa: E402

HEADING = "Mix law: which share, within a forgetting budget?"


def main(home: Path) -> int:
    from playwright.sync_api import sync_playwright

    port = T.free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.headless", "true", "--browser.gatherUsageStats", "false"], cwd=T.ROOT,
                              env=dict(os.environ, CPT_HOME=str(home)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        T.wait_healthy(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=T.CHROMIUM, args=T.ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1300})
            page.set_default_timeout(90_000)
            page.goto(f"{url}/Compare")
            heading = page.get_by_role("heading", name=HEADING).first
            heading.wait_for()
            page.locator(".st-key-mixlaw_chart .js-plotly-plot").wait_for()
            T.settle(page)
            heading.evaluate("el => el.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(1500)
            path = HERE / "compare_mixlaw.png"
            page.screenshot(path=str(path))
            T.shrink(path)
            print(f"{path.relative_to(T.ROOT)}  {path.stat().st_size // 1000} KB")
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    raise SystemExit(main(Path(sys.argv[1])))
