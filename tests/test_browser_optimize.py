"""The Optimize page drives a small optimisation end to end in real Chromium, against the processes of `make run`
(UI and worker; a fake remote API on loopback stands in for the target and the proposer): the form queues it,
the page follows it, and the report shows the held-out verdict, the leaderboard and the saved version."""

from __future__ import annotations

import pytest

from services import open_store
from tests.browser import (
    app_with_fake_model,
    choose,
    choose_only,
    chromium,
    go,
    idle,
    new_page,
    require_chromium,
)
from tests.conftest import wait_until

pytestmark = pytest.mark.slow
WORDS = {"positive": "love", "negative": "hate", "neutral": "own"}
GOOD = "Answer with exactly one word: positive, negative or neutral."


def reply(text: str) -> str:
    """The fake model behind the API: a proposer asked for a better instruction proposes one; the target answers
    in one word only when the instruction says so."""
    if "improved instruction" in text:
        return f"Instruction: {GOOD}"
    label = next((label for label, word in WORDS.items() if f" {word} " in text), "neutral")
    return label if "exactly one word" in text else f"I think the sentiment is {label}, overall"


@pytest.fixture
def app(isolated_home, fake_api):
    require_chromium()
    fake_api.script.transform = reply
    store = open_store()
    store.save_version(
        "draft",
        '{% message "user" %}\n{{ instruction }}\n\n{{ input }}\n{% endmessage %}',
        variables={"instruction": "Classify the review."},
    )
    labels = list(WORDS)
    store.save_suite(
        "reviews",
        [
            {
                "description": f"review {i}",
                "vars": {"input": f"Review {i}: I {WORDS[labels[i % 3]]} this gadget."},
                "assertions": [{"type": "answer-equals", "value": labels[i % 3]}],
                "tags": [labels[i % 3]],
            }
            for i in range(45)
        ],
    )
    with app_with_fake_model(isolated_home, store, fake_api) as running:
        yield running


def test_the_optimize_page_runs_an_optimisation_and_shows_its_held_out_verdict(app, tmp_path):
    with chromium() as browser:
        page = new_page(browser, app.url)
        go(page, "Optimize")
        form = page.locator("[data-testid='stForm']")
        form.wait_for()
        boxes = form.locator("[data-testid='stSelectbox']")
        choose(page, boxes.filter(has_text="Target model"), app.provider, "fake")
        choose(page, boxes.filter(has_text="Proposer"), app.provider, "fake")
        parts = form.locator("[data-testid='stMultiSelect']")
        choose_only(page, parts, "instruction rewrites (proposed from failing train cases)", "instruction")
        page.screenshot(path=str(tmp_path / "optimize-form.png"), full_page=True)
        form.get_by_role("button", name="Start optimisation").click()
        assert wait_until(lambda: app.store.list_optimizations() != [], timeout=30)
        row = app.store.list_optimizations()[0]
        assert wait_until(lambda: app.store.get_optimization(row.id).status == "completed", timeout=180)
        page.get_by_text("points on 15 unseen cases").wait_for(timeout=60_000)
        idle(page)
        page.screenshot(path=str(tmp_path / "optimize-report.png"), full_page=True)
        text = page.locator("[data-testid='stMain']").inner_text()
    assert "+100 points on 15 unseen cases" in text
    assert (
        "Candidates on validation" in text and f"Winner: candidate #1 — instruction #1: {GOOD[:40]}" in text
    )
    assert "draft@v2" in text and "nan" not in text.lower().split()
    saved = app.store.get_version("draft@v2")
    assert saved.parent_id == app.store.get_version("draft@v1").id
