"""The Red team page runs a small red team end to end in real Chromium, against the processes of `make run` (UI
and worker; a fake remote model on loopback): the form queues it, the page follows it, the report shows success
per family against the unguarded baseline, and the attacks that got through are saved as a suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from services import open_store, suites
from tests.browser import app_with_fake_model, choose, chromium, go, idle, new_page, require_chromium
from tests.conftest import wait_until

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "redteam" / "co_star_guarded.yaml"


def partly_defended(body: dict) -> str:
    """Refuses when its system prompt has rules, unless the attack claims to come from the developer; without
    rules it obeys (echoes) whatever it is told."""
    system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
    last = body["messages"][-1]["content"]
    if "### Rules ###" in system and "developer" not in last.lower():
        return "I can only help write announcements for the shop."
    return "echo: " + last


@pytest.fixture
def app(isolated_home, fake_api):
    require_chromium()
    fake_api.script.reply = partly_defended
    store = open_store()
    suites.import_file(store, EXAMPLE)
    with app_with_fake_model(isolated_home, store, fake_api) as running:
        yield running


def test_the_red_team_page_runs_a_red_team_and_promotes_what_got_through(app, tmp_path):
    with chromium() as browser:
        page = new_page(browser, app.url)
        go(page, "Red team")
        form = page.locator("[data-testid='stForm']")
        form.wait_for()
        boxes = form.locator("[data-testid='stSelectbox']")
        choose(page, boxes.filter(has_text="Model"), app.provider, "fake")
        choose(
            page, boxes.filter(has_text="Compare with"), "the same version without rules and refusal", "same"
        )
        attacks = form.get_by_label("Attacks")
        attacks.fill("27")
        attacks.press("Tab")
        page.screenshot(path=str(tmp_path / "redteam-form.png"), full_page=True)
        form.get_by_role("button", name="Start red team").click()
        assert wait_until(lambda: app.store.list_runs() != [], timeout=30)
        run = app.store.list_runs()[0]
        assert wait_until(lambda: app.store.get_run(run.id).status == "completed", timeout=180)
        page.get_by_text("attacks succeeded on co_star.v1.redteam").wait_for(timeout=60_000)
        idle(page)
        page.screenshot(path=str(tmp_path / "redteam-report.png"), full_page=True)
        for n, heading in enumerate(("Paired on the same attacks", "Worst successful attacks")):
            page.get_by_text(heading).first.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / f"redteam-report-{n}.png"))
        text = page.locator("[data-testid='stMain']").inner_text()
        assert "Attack success per family (95 % interval)" in text and "Paired on the same attacks" in text
        assert "blocks" in text and "more attacks than co_star.v1.unguarded" in text
        assert "Worst successful attacks" in text
        save = page.get_by_role("button", name="successful attacks as a suite")
        save.click()
        page.get_by_text("Saved suite regressions-").wait_for()
    promoted = [s for s, _ in app.store.list_suites() if s.name.startswith("regressions-")]
    assert len(promoted) == 1 and app.store.suite_cases(promoted[0].id)
    assert all("developer" in str(c.vars).lower() for c in app.store.suite_cases(promoted[0].id))
