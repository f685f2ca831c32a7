"""Regenerate the README's screenshots: `python docs/screenshots.py` starts the processes of `make run` on free
ports with a fresh data folder, stores a small demo (a CO-STAR version, a capitals suite run on the local model
under int4 and int8, three ratings, a production label), opens every page in Debian's Chromium and writes
docs/screenshots/<page>.png."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import App, chromium, go, new_page, settle, submit_capitals_runs  # noqa: E402
from tests.conftest import wait_until  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def demo(store) -> None:
    """A version, a suite and two finished runs of it (int4, int8) for the pages to show."""
    from prompting.templates import load

    store.save_version(
        "co_star", load("co_star").source, variables={v.name: v.example for v in load("co_star").variables}
    )
    version, ids = submit_capitals_runs(store)
    wait_until(lambda: all(store.get_run(i).status == "completed" for i in ids), timeout=600, interval=1)
    store.set_label(version.id, "production", "demo")
    from services import reviews

    for (result, _), good in zip(store.run_results(ids[0]), (True, True, False), strict=False):
        reviews.rate(
            store, result.id, good, score=4 if good else 2, comment="" if good else "not just the city"
        )


def quiet(page, still_s: float = 2.0, timeout_s: float = 120.0) -> None:
    """Wait until nothing runs (no status widget, no spinner) and the page has not changed for `still_s`: a
    script still loading the tokenizer would otherwise be photographed half drawn."""
    busy = "[data-testid='stStatusWidget'], [data-testid='stSpinner'], [data-testid='stSkeleton']"
    last, since, deadline = None, time.time(), time.time() + timeout_s
    while time.time() < deadline:
        state = page.evaluate(f'() => [!!document.querySelector("{busy}"), document.body.innerHTML.length]')
        if state != last or state[0]:
            last, since = state, time.time()
        elif time.time() - since >= still_s:
            return
        page.wait_for_timeout(250)


def shoot(page, name: str) -> None:
    settle(page)
    quiet(page)
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
    print(f"wrote docs/screenshots/{name}.png", file=sys.stderr)


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="workbench-shots-"))
    os.environ["WORKBENCH_HOME"] = str(home)
    OUT.mkdir(parents=True, exist_ok=True)
    with App(home) as app, chromium() as browser:
        os.environ["WORKBENCH_ENGINE_URL"] = app.env["WORKBENCH_ENGINE_URL"]
        from services import open_store

        demo(open_store())
        page = new_page(browser, app.url)
        page.set_viewport_size({"width": 1400, "height": 2000})  # Streamlit scrolls inside: show more at once
        shoot(page, "build")
        for name in ("Playground", "Test cases", "Runs", "Compare", "Review", "Engine", "Export"):
            go(page, name)
            shoot(page, name.lower().replace(" ", "_"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
