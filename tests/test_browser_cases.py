"""The Test cases editor in real Chromium, as a person types into it: the first keystroke in a row is kept, rows
added with "More rows" keep what was typed, empty cells are empty (not "None"), a suite saves twice with the
picker following it, and the values blank cells fall back to are listed beside the grid."""

from __future__ import annotations

import pytest

from services import open_store
from tests.browser import App, chromium, go, idle, new_page, require_chromium

pytestmark = pytest.mark.slow
HEADER, ROW = 36, 35  # the grid's header and row heights in pixels
DESCRIPTION_X = 200  # inside the Description column, right of the row numbers


@pytest.fixture(scope="module")
def cases_app(tmp_path_factory):
    require_chromium()
    home = tmp_path_factory.mktemp("cases-home")
    with App(home, engine=False, worker=False) as app:
        app.home = home
        yield app


def grid_rows(page, n: int = 0) -> list[list[str]]:
    """The rows' cells as text, each opening with its row number (the grid draws on a canvas and mirrors its
    cells in an accessible table)."""
    grid = page.locator("[data-testid='stDataFrame']").nth(n)
    grid.locator("table tbody tr").first.wait_for(state="attached")
    return grid.locator("table tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.querySelectorAll('td')].map(c => c.textContent))"
    )


def type_into(page, row: int, text: str, n: int = 0) -> None:
    """Click the Description cell of grid row `row` (1-based) and type as a person does."""
    box = page.locator("[data-testid='stDataFrame']").nth(n).bounding_box()
    page.mouse.click(box["x"] + DESCRIPTION_X, box["y"] + HEADER + ROW * (row - 1) + ROW // 2)
    # as a person waits to see the cell selected before typing: under load the click is handled late, and a key
    # pressed before the grid has selected (and focused) the cell goes nowhere
    cell = page.locator("[data-testid='stDataFrame']").nth(n).locator(f"#glide-cell-1-{row - 1}")
    cell.and_(page.locator("[aria-selected='true']")).wait_for(state="attached")
    page.wait_for_function(
        "id => document.activeElement && document.activeElement.id === id", arg=f"glide-cell-1-{row - 1}"
    )
    page.keyboard.type(text, delay=60)
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)


def test_typing_saving_twice_and_the_fallback_values(cases_app, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_HOME", str(cases_app.home))
    with chromium() as browser:
        page = new_page(browser, cases_app.url)
        idle(page)
        go(page, "Test cases")
        page.locator("[data-testid='stDataFrame']").first.wait_for()
        for n in (0, 1):  # cases and assertions: empty cells are empty, never "None"
            rows = grid_rows(page, n)
            assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
            assert {c for r in rows for c in r[1:]} <= {"", "1"}, rows  # 1: an assertion's default weight
        type_into(page, 1, "happy")
        assert grid_rows(page)[0][1] == "happy"  # the first keystroke is kept
        page.get_by_role("button", name="More rows (+5)").click()
        idle(page)
        rows = grid_rows(page)
        assert rows[0][1] == "happy" and len(rows) == 10
        type_into(page, 7, "sad")
        assert grid_rows(page)[6][1] == "sad"
        name = page.get_by_label("Save as (suites are immutable: a changed table becomes a new suite)")
        name.fill("moods")
        page.get_by_role("button", name="Save suite").click()
        page.get_by_text("Saved suite moods with 2 cases.").wait_for()
        idle(page)
        assert page.get_by_role("combobox", name="Suite").input_value() == "moods (2 cases)"
        assert name.input_value() == "moods-edited"
        assert [r[1] for r in grid_rows(page)[:3]] == ["happy", "sad", ""]
        page.get_by_role("button", name="Save suite").click()  # again: a new name, no collision
        page.get_by_text("Saved suite moods-edited with 2 cases.").wait_for()
        idle(page)
        columns_for = page.get_by_role("combobox", name="Columns for the variables of")
        columns_for.click()
        columns_for.fill("self_consistency")  # the list is long: filter it as a person does
        page.get_by_role("option", name="library:self_consistency").click()
        idle(page)
        fallbacks = page.get_by_text("What blank cells fall back to when library:self_consistency runs")
        fallbacks.wait_for()
        fallbacks.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "cases.png"), full_page=True)
    store = open_store()
    saved = [c.description for c in store.suite_cases(store.get_suite("moods").id)]
    assert saved == ["happy", "sad"]
    assert [c.description for c in store.suite_cases(store.get_suite("moods-edited").id)] == saved
