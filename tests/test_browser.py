"""The whole app once in real Chromium (Debian's /usr/bin/chromium, driven by Playwright; no browser download):
start the engine and the UI as `make run` does, build a CO-STAR prompt, run it on the local model, see the
streamed answer and the token heatmap, and keep a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
COSTAR = {
    "context": "We run a small bakery in Lyon.",
    "objective": "Announce our new sourdough loaf.",
    "style": "Short and plain.",
    "tone": "Warm.",
    "audience": "Our neighbours.",
    "response": "One sentence.",
}


def wait_for(url: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


@pytest.fixture
def running_app(isolated_home):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it when run as root)")
    engine_port, ui_port = free_port(), free_port()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "WORKBENCH_HOME": str(isolated_home),
        "WORKBENCH_ENGINE_URL": f"http://127.0.0.1:{engine_port}/v1",
    }
    engine = subprocess.Popen(
        [str(bin_dir / "workbench"), "serve", "--host", "127.0.0.1", "--port", str(engine_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ui = subprocess.Popen(
        [
            str(bin_dir / "streamlit"),
            "run",
            str(ROOT / "app.py"),
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(ui_port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{engine_port}/health")
        wait_for(f"http://127.0.0.1:{ui_port}/_stcore/health")
        yield f"http://127.0.0.1:{ui_port}"
    finally:
        for proc in (ui, engine):
            proc.terminate()
            proc.wait(timeout=30)


def test_build_run_stream_and_heatmap_in_chromium(running_app, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(running_app)
        expect(page.get_by_text("Build a prompt")).to_be_visible()
        for name, value in COSTAR.items():
            box = page.get_by_role("textbox", name=name, exact=True)
            box.fill(value)
            box.press("Tab")
        expect(page.get_by_text("We run a small bakery in Lyon.", exact=False).last).to_be_visible()
        preview = page.locator("[data-testid='stChatMessage']").first.inner_text()
        for section in ("Context", "Objective", "Style", "Tone", "Audience", "Response"):
            assert f"### {section} ###" in preview

        page.get_by_role("link", name="Playground").click()
        expect(page.get_by_text("Playground").first).to_be_visible()
        page.get_by_role("button", name="Run").click()
        answer = page.locator(".st-key-play_answer")
        expect(answer).to_be_visible(timeout=120_000)
        page.wait_for_function(
            "el => el.innerText.trim().length > 20", arg=answer.element_handle(), timeout=120_000
        )
        streamed = answer.inner_text()

        page.get_by_text("Token heatmap", exact=True).click()
        page.get_by_role("button", name="Run").click()
        tokens = page.locator(".st-key-play_heatmap_box .tok")
        expect(tokens.first).to_be_visible(timeout=120_000)
        assert tokens.count() > 3
        assert "p=" in tokens.first.get_attribute("title")
        shot = tmp_path / "workbench.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    assert len(streamed.strip()) > 20
    print(f"screenshot: {shot}")
