"""Cases edited as data, imports that refuse mistakes by name, and pickers that offer what users saved (ablation
variants stay with their version)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from services import open_store, sweeps, worker
from services.specs import save_provider
from tests.fakes import FakeProvider

ROOT = Path(__file__).resolve().parent.parent


def app(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_a_csv_with_a_typo_is_refused_naming_the_column_and_an_import_is_selected():
    at = app("pages/test_cases.py")
    at.file_uploader(key="upload_cases").set_value(
        ("caps.csv", b"country,__expectd\nFrance,Paris\n", "text/csv")
    ).run()
    at.button(key="do_cases_import").click().run()
    assert any("unknown special columns: __expectd" in e.value for e in at.error)
    assert open_store().list_suites() == []
    at.file_uploader(key="upload_cases").set_value(
        ("caps.csv", b"country,__expected\nFrance,Paris\n", "text/csv")
    ).run()
    at.button(key="do_cases_import").click().run()
    assert any("as suite caps" in s.value for s in at.success)
    assert at.selectbox(key="cases_suite").value == "caps"  # the imported suite is shown


def test_ablation_variants_are_absent_from_version_pickers():
    store = open_store()
    version = store.save_version(
        "co_star",
        (ROOT / "templates" / "co_star.j2").read_text(),
        variables={
            "context": "c",
            "objective": "o",
            "style": "s",
            "tone": "t",
            "audience": "a",
            "response": "r",
        },
    )
    suite = store.save_suite("s", [{"vars": {}, "assertions": [{"type": "contains", "value": "x"}]}])
    fake = FakeProvider()
    run_id = sweeps.ablation_submit(store, suite.id, version.id, fake.spec)
    worker.execute(store, run_id, providers={save_provider(store, fake.spec).id: fake})
    assert len(store.list_versions(include_variants=True)) == 7 and [
        v.label for v in store.list_versions()
    ] == ["co_star@v1"]
    at = app("pages/runs.py")
    assert at.multiselect(key="runs_versions").options == ["co_star@v1"]
    assert at.multiselect(key="runs_versions").value == ["co_star@v1"]
    at.switch_page("pages/playground.py").run()
    at.radio(key="play_source").set_value("Stored version").run()
    assert at.selectbox(key="play_version").options == ["co_star@v1"]
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="abl_version").options == ["co_star@v1"]


def test_the_cases_editor_round_trip():
    at = app("pages/test_cases.py")
    at.selectbox(key="cases_template").set_value("library:few_shot").run()  # columns: examples, input
    # typed into the blank rows the grids offer (no row added first)
    at.session_state["grid_cases_(new suite)_library:few_shot_0"] = {
        "edited_rows": {
            0: {
                "Description": "positive",
                "instruction": "Label it.",
                "examples": '[{"input": "bad", "output": "neg"}]',
                "input": "great",
                "Expected": "pos",
                "Threshold": "0.5",
                "Tags": "sentiment",
            },
            1: {"instruction": "Label it.", "examples": "[]", "input": "awful"},
        },
        "deleted_rows": [],
        "added_rows": [],
    }
    at.session_state["grid_asserts_(new suite)_0"] = {
        "edited_rows": {
            0: {"Case": "2", "Type": "not-icontains", "Value": "pos", "Weight": 2.0},
            1: {"Case": "1", "Type": "latency", "Threshold": "5000"},
        },
        "deleted_rows": [],
        "added_rows": [],
    }
    at.text_input(key="cases_save_name").set_value("labels")
    at.button(key="do_cases_save").click().run()
    assert any("Saved suite labels with 2 cases." in s.value for s in at.success), [e.value for e in at.error]
    # the picker follows the saved suite, so saving again does not collide with the name just used
    assert at.selectbox(key="cases_suite").value == "labels"
    assert at.text_input(key="cases_save_name").value == "labels-edited"
    store = open_store()
    expected = [
        (
            "positive",
            {"instruction": "Label it.", "examples": [{"input": "bad", "output": "neg"}], "input": "great"},
            "pos",
            0.5,
            ["sentiment"],
            [{"type": "latency", "threshold": 5000.0}],
        ),
        (
            "",
            {"instruction": "Label it.", "examples": [], "input": "awful"},
            None,
            None,
            [],
            [{"type": "not-icontains", "value": "pos", "weight": 2.0}],
        ),
    ]
    first = [
        (c.description, c.vars, c.expected, c.threshold, c.tags, c.assertions)
        for c in store.suite_cases(store.get_suite("labels").id)
    ]
    assert first == expected
    at.run()
    at.selectbox(key="cases_suite").set_value("labels").run()
    at.selectbox(key="cases_template").set_value("(none)").run()
    at.text_input(key="cases_save_name").set_value("labels-2")
    at.button(key="do_cases_save").click().run()
    again = [
        (c.description, c.vars, c.expected, c.threshold, c.tags, c.assertions)
        for c in store.suite_cases(store.get_suite("labels-2").id)
    ]
    assert again == expected


def test_an_editing_mistake_names_its_row_and_column():
    at = app("pages/test_cases.py")
    at.selectbox(key="cases_template").set_value("library:zero_shot").run()
    at.session_state["grid_cases_(new suite)_library:zero_shot_0"] = {
        "edited_rows": {0: {"Description": "a", "instruction": "x", "input": "{not json"}},
        "deleted_rows": [],
        "added_rows": [],
    }
    at.text_input(key="cases_save_name").set_value("broken")
    at.button(key="do_cases_save").click().run()
    assert any(
        "cases row 1, column input: invalid JSON (Expecting property name enclosed in double quotes at "
        "column 2)" in e.value
        for e in at.error
    )
    assert open_store().list_suites() == []
