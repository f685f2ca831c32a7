"""A conversation case end to end in real Chromium, against the processes of `make run` (UI and worker; a fake
remote model on loopback): typed turn by turn on Test cases, run from Runs, its transcript opened with the verdict
of each turn, and the failing turn saved as a regression case that replays it."""

from __future__ import annotations

import pytest

from prompting.conversation import TURNS_VAR
from services import open_store
from tests.browser import (
    app_with_fake_model,
    choose_only,
    chromium,
    go,
    idle,
    new_page,
    require_chromium,
    run_form,
)
from tests.conftest import wait_until

pytestmark = pytest.mark.slow
HEADER, ROW, ROLE_X = (
    36,
    35,
    70,
)  # the grid's header and row heights; x of the Role column, right of the numbers
TURNS = [("I want a refund.", "icontains", "order number"), ("It is KC-10442.", "icontains", "refund")]


def support_reply(body: dict) -> str:
    """Asks for the order number, then answers the order number with a leak instead of the refund."""
    return (
        "Sure. SECRET code 42."
        if "KC-10442" in body["messages"][-1]["content"]
        else "Your order number, please?"
    )


@pytest.fixture
def app(isolated_home, fake_api):
    require_chromium()
    fake_api.script.reply = support_reply
    store = open_store()
    store.save_version("support", '{% message "system" %}You are a shop assistant.{% endmessage %}')
    with app_with_fake_model(isolated_home, store, fake_api) as running:
        yield running


def turn_cell(page, grid, row: int, column: int, text: str) -> None:
    """Type `text` into the turns grid's cell (row from 1; column 1 Content, 2 Assert type, 3 Assert value) as a
    person does: select the row's Role cell, move right, open the editor, type, commit."""
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + ROLE_X, box["y"] + HEADER + ROW * (row - 1) + ROW // 2)
    page.wait_for_timeout(300)
    for _ in range(column):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    page.wait_for_timeout(250)
    page.keyboard.type(text, delay=30)
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)


def build_case(page) -> None:
    go(page, "Test cases")
    page.get_by_text("Add a conversation case").click()
    section = page.locator("details", has=page.locator("summary", has_text="Add a conversation case"))
    grid = section.locator("[data-testid='stDataFrame']")
    grid.wait_for()
    section.get_by_label("Description").fill("refund flow")
    for row, (text, kind, value) in enumerate(TURNS, start=1):
        for column, typed in enumerate((text, kind, value), start=1):
            turn_cell(page, grid, row, column, typed)
    section.get_by_label("Save as").fill("conversations")
    section.get_by_role("button", name="Add to suite").click()
    page.get_by_text("Saved suite conversations with 1 cases.").wait_for()


def test_a_conversation_case_built_in_the_editor_runs_and_its_failing_turn_becomes_a_regression(
    app, tmp_path
):
    with chromium() as browser:
        page = new_page(browser, app.url)
        build_case(page)
        [case] = app.store.suite_cases(app.store.get_suite("conversations").id)
        assert [m["content"] for m in case.vars[TURNS_VAR]] == [t[0] for t in TURNS]
        assert [(a["turn"], a["value"]) for a in case.assertions] == [(1, "order number"), (2, "refund")]
        go(page, "Runs")
        form = run_form(page)
        choose_only(page, form.locator("[data-testid='stMultiSelect']").nth(1), app.provider, "fake")
        form.get_by_role("button", name="Start run").click()
        assert wait_until(lambda: app.store.list_runs() != [], timeout=30)
        run = app.store.list_runs()[0]
        assert wait_until(lambda: app.store.get_run(run.id).status == "completed", timeout=120)
        page.get_by_text("Conversation cases, per turn").wait_for()
        idle(page)
        cell = page.locator("details", has=page.locator("summary", has_text="FAIL · refund flow"))
        cell.locator("summary").click()
        cell.get_by_text("Turn 2 — the model's answer").wait_for()
        assert (
            "Sure. SECRET code 42." in cell.inner_text() and "Your order number, please?" in cell.inner_text()
        )
        page.screenshot(path=str(tmp_path / "conversation-transcript.png"), full_page=True)
        cell.get_by_role("button", name="Save turn 2 as a regression case").click()
        page.get_by_text("Turn 2 saved as a regression case in suite conversations-regressions.").wait_for()
    regression = app.store.suite_cases(app.store.get_suite("conversations-regressions").id)[-1]
    assert [m["role"] for m in regression.vars[TURNS_VAR]] == ["user", "assistant", "user"]
    assert regression.vars[TURNS_VAR][1]["content"] == "Your order number, please?"
    assert regression.assertions == [{"type": "icontains", "value": "refund", "turn": 1}]
