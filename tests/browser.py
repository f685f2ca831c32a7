"""Helpers for the browser tests: start the app as `make run` does (engine optional, worker, UI) and drive it in
Debian's Chromium with Playwright (no browser download)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from services.net import free_port, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it when run as root)")


def spawn(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


class App:
    """The processes of `make run`, on free loopback ports."""

    def __init__(self, home: Path, *, engine: bool = True, worker: bool = True):
        self.engine_port, self.ui_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "WORKBENCH_HOME": str(home),
            "WORKBENCH_ENGINE_URL": f"http://127.0.0.1:{self.engine_port}/v1",
        }
        self.with_engine, self.with_worker = engine, worker
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start_worker(self) -> subprocess.Popen:
        self.procs["worker"] = spawn([str(BIN / "workbench"), "worker", "--poll", "0.2"], self.env)
        return self.procs["worker"]

    def __enter__(self) -> App:
        if self.with_engine:
            self.procs["engine"] = spawn(
                [str(BIN / "workbench"), "serve", "--host", "127.0.0.1", "--port", str(self.engine_port)],
                self.env,
            )
        if self.with_worker:
            self.start_worker()
        self.procs["ui"] = spawn(
            [
                str(BIN / "streamlit"),
                "run",
                str(ROOT / "app.py"),
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(self.ui_port),
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
                "--server.fileWatcherType",
                "none",
            ],
            self.env,
        )
        if self.with_engine:
            wait_for(f"http://127.0.0.1:{self.engine_port}/health")
        wait_for(f"{self.url}/_stcore/health")
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs.values():
            stop(proc)


@contextmanager
def app_with_fake_model(home: Path, store, fake_api):
    """The UI and a worker (no engine) with the fake remote API configured as a provider: the app, with its
    `store` and the provider's label as `provider`."""
    from prompting.providers import ProviderSpec
    from services.specs import save_provider

    spec = ProviderSpec.parse(
        "openai:chat:fake-model", {"apiBaseUrl": f"{fake_api.url}/v1", "apiKeyEnvar": "FAKE_KEY"}
    )
    save_provider(store, spec)
    with App(home, engine=False) as running:
        running.store, running.provider = store, spec.label
        yield running


LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


@contextmanager
def chromium():
    """Chromium for a test. Every page it opens is offline: a request to any host but loopback is aborted and
    recorded, and the test fails naming it (the workbench must work with no network)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        browser.offsite = []
        try:
            yield browser
        except BaseException:
            print_pages(browser)
            raise
        finally:
            browser.close()
        assert not browser.offsite, f"the pages requested hosts other than loopback: {browser.offsite}"


def _offline(browser):
    """A route handler that lets loopback, data:, blob: and file: through and aborts (and records) anything else."""
    from urllib.parse import urlsplit

    def handle(route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if (
            parts.scheme in ("data", "blob", "file")
            or parts.hostname in LOOPBACK
            or f"[{parts.hostname}]" in LOOPBACK
        ):
            route.continue_()
        else:
            browser.offsite.append(url)
            route.abort()

    return handle


def print_pages(browser) -> None:
    """What each open page showed when a test failed, for the failure's report (CI keeps no screenshots)."""
    for context in browser.contexts:
        for page in context.pages:
            try:
                text = page.locator("[data-testid='stApp']").inner_text(timeout=5_000)
            except Exception as exc:  # noqa: BLE001 - a page that cannot be read says why, and the test's error stands
                text = f"(not readable: {exc})"
            print(f"--- {page.url} when the test failed ---\n{text[-6000:]}")


def new_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    if hasattr(browser, "offsite"):
        page.route("**/*", _offline(browser))
    page.set_default_timeout(60_000)
    page.goto(url)
    return page


IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def idle(page, timeout_ms: int = 120_000) -> None:
    """Wait until no script run is in flight: Streamlit marks its root with the script's state, and a click that
    lands while a rerun redraws the page can hit an element that is then replaced (a navigation remounts the page:
    an expander opened just before it closes again). Twice, 300 ms apart, so a rerun requested in between counts."""
    for _ in range(2):
        page.locator(IDLE).wait_for(state="attached", timeout=timeout_ms)
        page.wait_for_timeout(300)
    page.locator(IDLE).wait_for(state="attached", timeout=timeout_ms)


def settle(page, timeout_ms: int = 120_000) -> None:
    """Wait until the page script has drawn its title and no script run is in flight."""
    page.locator("[data-testid='stMain'] h1").first.wait_for(timeout=timeout_ms)
    idle(page, timeout_ms)


def go(page, name: str) -> None:
    """Open a page from the sidebar navigation and wait until it has been drawn."""
    page.get_by_role("link", name=name, exact=True).click()
    page.wait_for_timeout(300)
    idle(page)


def greedy(page) -> None:
    """Set the Playground's temperature slider to 0 (greedy decoding: the same answer every time) and wait until
    the page has taken it."""
    slider = page.locator(".st-key-play_temperature")
    slider.locator("input[type=range]").focus()
    page.keyboard.press("Home")
    # the thumb's value: the tick bar under the slider always shows the minimum, 0.00
    page.wait_for_function(
        "el => el.innerText.trim() === '0.00'",
        arg=slider.get_by_test_id("stSliderThumbValue").element_handle(),
    )
    page.wait_for_timeout(500)  # the slider sends its value once the key is released
    idle(page)


def run_form(page):
    """The Runs page's form, its expander opened when runs exist (it starts collapsed then)."""
    form = page.locator("[data-testid='stForm']")
    page.get_by_text("Start a run").first.wait_for()
    idle(page)
    if not form.is_visible():
        page.get_by_text("Start a run").first.click()
    form.wait_for()
    return form


def chips(box) -> list[str]:
    """The options a multiselect holds, read from its chips' remove buttons."""
    return [
        label.removeprefix("Remove ")
        for label in box.locator("button[aria-label^='Remove']").evaluate_all(
            "bs => bs.map(b => b.ariaLabel)"
        )
    ]


def choose(page, box, option: str, typed: str) -> None:
    """Pick `option` in the selectbox `box` by typing into it, as a person filters a long list."""
    box.locator("input").click()
    box.locator("input").fill(typed)
    page.get_by_role("option", name=option).click()
    idle(page)


def choose_only(page, box, option: str, typed: str) -> None:
    """Leave exactly `option` chosen in the multiselect `box`, picking it from the list after typing `typed`.
    Inside a form no widget reruns the script, but a rerun from elsewhere (a refreshing panel, a run that just
    ended) can redraw the box while its list is open and drop what was typed; so this checks the chips it
    left and tries again, up to three times."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _attempt in range(3):
        idle(page)
        for label in chips(box):
            if label != option:
                box.locator(f"button[aria-label='Remove {label}']").click()
        if option not in chips(box):
            box.locator("input").fill(typed)
            try:
                page.get_by_role("option", name=option).click(timeout=15_000)
            except PlaywrightTimeout:
                pass
            page.keyboard.press("Escape")
        if chips(box) == [option]:
            return
    raise AssertionError(f"could not leave only {option!r} chosen: the box holds {chips(box)}")


CAPITALS = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Italy", "Rome"),
    ("Germany", "Berlin"),
    ("Spain", "Madrid"),
]


def submit_capitals_runs(store, methods=("int4", "int8")):
    """A zero-shot version and a capitals suite, queued on the local model under each method (the workers run
    them): what the Compare test and the README screenshots look at. Returns the version and the run ids."""
    from prompting.providers import ProviderSpec
    from prompting.templates import load
    from services import runs
    from services.specs import save_provider
    from settings import get_settings

    version = store.save_version(
        "zero_shot", load("zero_shot").source, variables={"instruction": "Answer with the capital city only."}
    )
    suite = store.save_suite(
        "capitals",
        [
            {
                "description": country,
                "vars": {"input": f"Capital of {country}?"},
                "assertions": [{"type": "icontains", "value": city}],
            }
            for country, city in CAPITALS
        ],
    )
    ids = []
    for method in methods:
        config = save_provider(store, ProviderSpec.parse(f"local:{get_settings().default_model}@{method}"))
        plan = runs.RunPlan(suite.id, [version.id], [config.id], params={"temperature": 0, "max_tokens": 12})
        ids.append(runs.submit(store, plan).id)
    return version, ids
