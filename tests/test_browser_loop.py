"""The loop "change the prompt → run → compare → decide" in real Chromium against the processes of `make run`
with the local model: an int4 run compared with an int8 run case by case, a five-sample self-consistency vote
that shows every sample's answer, a run refused before it starts when the suite lacks a variable, and a heatmap
that shows characters spread over several tokens whole."""

from __future__ import annotations

import re

import pytest

from services import open_store
from tests.browser import (
    CAPITALS,
    App,
    chromium,
    go,
    greedy,
    idle,
    new_page,
    require_chromium,
    run_form,
    submit_capitals_runs,
)
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop_app(tmp_path_factory):
    require_chromium()
    home = tmp_path_factory.mktemp("loop-home")
    with App(home) as app:
        app.home = home
        yield app


@pytest.fixture
def app(loop_app, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(loop_app.home))
    monkeypatch.setenv("WORKBENCH_ENGINE_URL", loop_app.env["WORKBENCH_ENGINE_URL"])
    return loop_app


def test_an_int4_run_compared_with_an_int8_run(app, tmp_path):
    store = open_store()
    _, ids = submit_capitals_runs(store)
    assert wait_until(lambda: all(store.get_run(i).status == "completed" for i in ids), timeout=180)
    with chromium() as browser:
        page = new_page(browser, app.url)
        go(page, "Compare")
        page.locator("p", has_text="Per case").first.wait_for()
        page.locator("[data-testid='stDataFrame']").last.wait_for()  # the per-case table (a canvas grid)
        verdict = page.locator("[data-testid='stAlert']").first.inner_text()
        # the paragraph, not its bold title
        counts = page.locator("p", has_text="Per case").first.inner_text()
        page.get_by_text("How this was computed").click()
        method = page.get_by_text("Test: exact McNemar test").first.inner_text()
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    assert f"{len(CAPITALS)} cases" in verdict and "noise" in verdict, verdict
    assert "p = " in method
    improved, regressed, same = (int(n) for n in re.findall(r"\d+", counts)[:3])
    assert improved + regressed + same == len(CAPITALS)  # every case, A against B


def test_self_consistency_shows_every_sample(app, tmp_path):
    with chromium() as browser:
        page = new_page(browser, app.url)
        go(page, "Playground")
        page.get_by_text("Free text", exact=True).click()
        idle(page)
        box = page.get_by_role("textbox", name="Message")
        box.fill("A shop sells pens at 3 dollars each. How much do 4 pens cost?")
        box.press("Tab")
        idle(page)  # each rerun-causing action waits for its rerun: a click during one can be lost
        max_tokens = page.locator("[data-testid='stSidebar']").get_by_role("spinbutton", name="max tokens")
        max_tokens.fill("40")  # five short samples: the view, not the arithmetic, is under test
        max_tokens.press("Tab")
        idle(page)
        page.get_by_text("Self-consistency", exact=True).click()
        idle(page)
        assert page.get_by_role("radio", name="Self-consistency").is_checked()
        page.get_by_role("button", name="Run").click()
        page.get_by_text("Sample 5:").wait_for(timeout=300_000)
        idle(page)  # the view is drawn while the script still runs: read it once the run has ended (a read
        # taken as "Sample 5:" appeared once missed the metric above it, which the screenshot then showed)
        text = page.locator("[data-testid='stMain']").inner_text()
        page.screenshot(path=str(tmp_path / "self-consistency.png"), full_page=True)
    assert all(f"Sample {i}:" in text for i in range(1, 6))
    assert "5 samples (n = 5 from the template's strategy" in text
    assert "Majority answer" in text  # the answer line is a grammar on our engine: every sample has one
    assert "the answer line was enforced by a grammar (at most 40 tokens each)" in text


def test_a_run_missing_a_variable_is_refused_before_it_starts(app):
    store = open_store()
    store.save_version("topical", "Write one sentence about {{ topic }}.")
    before = len(store.list_runs())
    with chromium() as browser:
        page = new_page(browser, app.url)
        go(page, "Runs")
        start = run_form(page).get_by_role("button", name="Start run")
        error = page.get_by_text("missing vars for prompt 'topical@v1': topic").first
        for _ in range(3):  # under load a click can land while the form is still being redrawn, and be lost
            start.click()
            if wait_until(error.is_visible, timeout=20):
                break
        assert error.is_visible(), page.locator("[data-testid='stMain']").inner_text()
        assert "nothing was started" in page.locator("[data-testid='stAlert']").first.inner_text()
    assert len(store.list_runs()) == before


def test_the_heatmap_shows_a_character_spread_over_tokens_whole(app, tmp_path):
    with chromium() as browser:
        page = new_page(browser, app.url)
        go(page, "Playground")
        page.get_by_text("Free text", exact=True).click()
        idle(page)
        box = page.get_by_role("textbox", name="Message")
        box.fill("Copy this text: 🎉 party 🎉")
        box.press("Tab")
        idle(page)
        greedy(page)
        page.get_by_text("Token heatmap", exact=True).click()
        idle(page)
        assert page.get_by_role("radio", name="Token heatmap").is_checked()
        page.get_by_role("button", name="Run").click()
        tokens = page.locator(".st-key-play_heatmap_box .tok")
        tokens.first.wait_for(timeout=120_000)
        texts = tokens.all_inner_texts()
        titles = [tokens.nth(i).get_attribute("title") for i in range(tokens.count())]
        page.screenshot(path=str(tmp_path / "heatmap.png"), full_page=True)
    assert "🎉" in texts and not any("\ufffd" in t for t in texts)
    assert any("tokens)" in t for t in titles)  # the emoji's tokens were merged into one piece
