"""Every page renders without an exception, and the key interactions work (streamlit.testing AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from services import open_store, worker
from services.specs import save_provider
from tests.fakes import FakeProvider

ROOT = Path(__file__).resolve().parent.parent
# every page script in pages/ (tests/test_architecture.py checks app.py lists exactly these)
PAGES = sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py") if p.stem != "__init__")
COSTAR = {
    "context": "We run a bakery.",
    "objective": "Announce sourdough.",
    "style": "Plain.",
    "tone": "Warm.",
    "audience": "Neighbours.",
    "response": "Two sentences.",
}


def app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(page):
    at = app()
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    assert at.title, "every page has a title"


def fill_co_star(at: AppTest) -> None:
    for name, value in COSTAR.items():
        at.text_area(key=f"w_build_co_star_{name}").set_value(value)
    at.run()


def preview_text(at: AppTest) -> str:
    return "\n".join(t.value for t in at.text)


def test_co_star_form_fills_every_section_of_the_preview():
    at = app()
    fill_co_star(at)
    text = preview_text(at)
    for section, value in zip(
        ["Context", "Objective", "Style", "Tone", "Audience", "Response"], COSTAR.values(), strict=True
    ):
        assert f"### {section} ###\n{value}" in text
    assert any(m.label == "Tokens for the local model" for m in at.metric)
    at.radio(key="w_build_delimiter").set_value("xml").run()
    assert "<context>\nWe run a bakery.\n</context>" in preview_text(at)


def test_a_missing_variable_is_an_error_not_a_traceback():
    at = app()
    at.text_area(key="w_build_co_star_tone").set_value("").run()
    assert not at.exception
    assert any("missing variables: tone" in e.value for e in at.error)


def test_save_a_version_and_diff_two():
    at = app()
    fill_co_star(at)
    at.text_input(key="w_build_note").set_value("first").run()
    at.button[0].click().run()
    assert any("Saved co_star@v1" in s.value for s in at.success)
    at.text_area(key="w_build_co_star_tone").set_value("Playful.").run()
    at.button[0].click().run()
    assert [v.label for v in open_store().list_versions()] == ["co_star@v1", "co_star@v2"]
    assert open_store().list_versions()[0].variables["tone"] == "Warm."
    code = "\n".join(c.value for c in at.code)
    assert '-variables: {"audience": "Neighbours."' in code or "Warm." in code


def test_state_survives_page_switches():
    at = app()
    fill_co_star(at)
    at.switch_page("pages/engine.py").run()
    at.switch_page("pages/build.py").run()
    assert at.text_area(key="w_build_co_star_context").value == "We run a bakery."


def remote(fake_api) -> str:
    """The fake remote API stored as a provider configuration, as a user would add one; returns its label."""
    from prompting.providers import ProviderSpec

    spec = ProviderSpec.parse(
        "openai:chat:fake-model", {"apiBaseUrl": f"{fake_api.url}/v1", "apiKeyEnvar": "FAKE_KEY"}
    )
    save_provider(open_store(), spec)
    return spec.label


def test_start_a_run_against_a_fake_remote_api(fake_api):
    fake_api.script.transform = lambda text: "Sourdough is here!"
    store = open_store()
    version = store.save_version("co_star", open(ROOT / "templates" / "co_star.j2").read(), variables=COSTAR)
    store.save_suite(
        "bakery",
        [
            {
                "description": "mentions sourdough",
                "vars": {},
                "assertions": [{"type": "icontains", "value": "sourdough"}],
            },
            {
                "description": "is short",
                "vars": {},
                "assertions": [{"type": "levenshtein", "value": "Sourdough!", "threshold": 3}],
            },
        ],
    )
    label = remote(fake_api)
    at = app()
    at.switch_page("pages/runs.py").run()
    at.multiselect(key="runs_providers").set_value([label])
    at.multiselect(key="runs_versions").set_value([version.label])
    at.button(key="FormSubmitter:start_run-Start run").click().run()
    assert not at.exception, at.exception
    [run] = store.list_runs()
    assert run.status == "queued" and fake_api.script.requests == []  # the page queues; a worker executes

    worker.execute(store, run.id)  # what `workbench worker` does
    at.run()
    stored = store.run_results(run.id)
    assert [r.error for r, _ in stored] == [None, None]
    assert len(stored) == 2 and all(scores for _, scores in stored)
    assert [r.passed for r, _ in stored] == [True, False]
    # the version's bound variables were rendered into what the provider received
    requests = fake_api.script.requests
    assert requests and all(
        r["messages"][0]["content"].startswith("### Context ###\nWe run a bakery.") for r in requests
    )
    assert at.dataframe, "the results grid is shown"
    assert any("PASS · mentions sourdough" in e.label for e in at.expander)
    assert any("FAIL · is short" in e.label for e in at.expander)


def test_playground_heatmap_with_a_fake_remote_api(fake_api):
    fake_api.script.transform = lambda text: "bread is good"
    label = remote(fake_api)
    at = app()
    at.switch_page("pages/playground.py").run()
    at.selectbox(key="play_provider").set_value(label)
    at.radio(key="play_source").set_value("Free text")
    at.radio(key="play_mode").set_value("Token heatmap").run()
    at.button(key="do_play_run").click().run()
    assert not at.exception, at.exception
    html = "\n".join(m.value for m in at.markdown)
    assert "class='heatmap'" in html and html.count("class='tok'") == 3
    assert fake_api.script.requests[-1]["logprobs"] is True


def test_an_empty_suite_is_refused():
    at = app()
    at.switch_page("pages/test_cases.py").run()
    assert not at.exception
    at.text_input(key="cases_save_name").set_value("handmade").run()
    at.button(key="do_cases_save").click().run()
    assert any("Nothing was saved. a suite needs at least one case" in e.value for e in at.error)
    assert open_store().list_suites() == []


def test_compare_two_runs_and_export_a_version():

    store = open_store()
    fake = FakeProvider(lambda messages, params: "Sourdough is here!")
    version = store.save_version("co_star", open(ROOT / "templates" / "co_star.j2").read(), variables=COSTAR)
    suite = store.save_suite(
        "bakery", [{"vars": {}, "assertions": [{"type": "icontains", "value": "sourdough"}]}]
    )
    config = save_provider(store, fake.spec)
    for run_id in ("run-a", "run-b"):
        store.create_run(suite_id=suite.id, version_ids=[version.id], provider_ids=[config.id], run_id=run_id)
        worker.execute(store, run_id, providers={config.id: fake})
    at = app()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    assert any(m.label.startswith("Pass rate: A ") for m in at.metric)
    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception
    # the cell under review is named by its version and provider, not by their database ids
    assert any(f"· co_star@v1 · {config.label} · repeat 0" in m.value for m in at.markdown)
    at.switch_page("pages/export.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="export_ref").value == "co_star@v1"
    code = "\n".join(c.value for c in at.code)
    assert "### Context ###\\nWe run a bakery." in code  # the OpenAI messages with the version's variables
    assert "description: exported co_star@v1" in code
