"""Suites: import (immutable, reused when identical), edited rows to cases, and the Test cases page round trip."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from services import case_editor, open_store, suites
from services.specs import case_of

ROOT = Path(__file__).resolve().parents[2]
SUITE = """\
prompts: ["Capital of {{ country }}?"]
providers: [local:smollm2-135m-instruct]
tests:
  - {description: france, vars: {country: France}, assert: [{type: icontains, value: Paris}]}
"""


def test_importing_identical_content_reuses_the_suite_and_changed_content_gets_a_new_name(tmp_path):
    store = open_store()
    path = tmp_path / "caps.yaml"
    path.write_text(SUITE)
    first = suites.import_file(store, path)
    again = suites.import_file(store, path)
    assert (again.suite_id, again.name) == (first.suite_id, "caps")
    path.write_text(SUITE.replace("Paris", "paris"))
    changed = suites.import_file(store, path)
    assert changed.suite_id != first.suite_id and changed.name.startswith("caps-")


def test_tables_become_cases_and_every_problem_names_table_row_and_column():
    case_rows = [
        {
            "Description": "ok",
            "country": "France",
            "examples": '[{"input": "a"}]',
            "Expected": "Paris",
            "Threshold": None,
            "Tags": "geo, easy",
        },
        {
            "Description": "",
            "country": "Spain",
            "examples": "[oops",
            "Expected": "",
            "Threshold": "high",
            "Tags": "",
        },
        {
            "Description": None,
            "country": None,
            "examples": None,
            "Expected": None,
            "Threshold": None,
            "Tags": None,
        },
    ]
    assertion_rows = [
        {"Case": 1, "Type": "icontains", "Value": "paris", "Threshold": None, "Weight": 2.0},
        {"Case": 5, "Type": "equals", "Value": "x", "Threshold": None, "Weight": 1.0},
        {"Case": 2, "Type": "contains", "Value": "", "Threshold": None, "Weight": 1.0},
        {"Case": 2, "Type": "nope", "Value": "x", "Threshold": None, "Weight": 1.0},
    ]
    cases, problems = case_editor.cases_from_tables(case_rows, assertion_rows, ["country", "examples"])
    assert problems == [
        "cases row 2, column examples: invalid JSON (Expecting value at column 2)",
        "cases row 2, column Threshold: must be a number, got 'high'",
        "assertions row 2, column Case: must be the row number of a case (1 to 2), got 5",
        "assertions row 3, column Value: 'contains' needs a value",
        "assertions row 4, column Type: unknown assertion type 'nope'",
    ]
    assert cases[0] == {
        "description": "ok",
        "vars": {"country": "France", "examples": [{"input": "a"}]},
        "expected": "Paris",
        "threshold": None,
        "tags": ["geo", "easy"],
        "assertions": [{"type": "icontains", "value": "paris", "weight": 2.0}],
    }
    assert case_editor.cases_from_tables([], [], [])[1] == ["a suite needs at least one case"]


def test_blank_rows_anywhere_are_skipped_and_assertions_follow_the_grid_row_of_their_case():
    blank = {"Description": "", "word": "", "Expected": "", "Threshold": "", "Tags": ""}
    rows = [{**blank, "word": "a"}, blank, {**blank, "word": "b", "Threshold": "1.5"}, blank]
    asserts = [
        {"Case": "3", "Type": "contains", "Value": "b", "Threshold": "", "Weight": 1.0},
        {
            "Case": "",
            "Type": None,
            "Value": "",
            "Threshold": "",
            "Weight": 1.0,
        },  # a blank row (default weight)
        {"Case": "2", "Type": "contains", "Value": "x", "Threshold": "", "Weight": 1.0},
    ]
    cases, problems = case_editor.cases_from_tables(rows, asserts, ["word"])
    assert [c["vars"] for c in cases] == [{"word": "a"}, {"word": "b"}]
    assert cases[1]["assertions"] == [{"type": "contains", "value": "b"}]
    assert problems == [
        "cases row 3, column Threshold: must be a fraction from 0 to 1, got '1.5'",
        "assertions row 3, column Case: must be the row number of a case (1, 3), got '2'",
    ]


def test_the_fall_back_values_of_a_version_and_a_library_template():
    store = open_store()
    store.save_version("co_star", (ROOT / "templates" / "co_star.j2").read_text(), variables={"tone": "warm"})
    required, found = case_editor.fallbacks(store, "co_star@v1")
    by_name = {f.name: f for f in found}
    assert by_name["tone"].value == "warm" and by_name["tone"].source == "the version's value"
    assert "context" in required and by_name["context"].source == "none: every case must set it"
    required, found = case_editor.fallbacks(store, "library:self_consistency")
    assert required == ["question"] and {f.name: f.value for f in found}["answer_format"] == "a number"
    tables = case_editor.tables(store, None, required, blank_rows=3)
    assert len(tables.cases) == 3 and all(v == "" for row in tables.cases for v in row.values())


def test_expected_is_asserted_once_at_run_time():
    store = open_store()
    suite = store.save_suite(
        "s",
        [
            {"vars": {}, "expected": "Paris", "assertions": [{"type": "equals", "value": "Paris"}]},
            {"vars": {}, "expected": "Rome", "assertions": []},
        ],
    )
    first, second = (case_of(c) for c in store.suite_cases(suite.id))
    assert first.assertions == [{"type": "equals", "value": "Paris"}]
    assert second.assertions == [{"type": "equals", "value": "Rome"}]


def test_the_test_cases_page_saves_a_suite_twice_without_growing_its_assertions():
    store = open_store()
    store.save_suite(
        "caps",
        [
            {
                "description": "france",
                "vars": {"country": "France"},
                "expected": "Paris",
                "assertions": [{"type": "icontains", "value": "Paris"}],
            }
        ],
    )
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/test_cases.py").run()
    name = "caps"
    for round_ in (1, 2):
        at.selectbox(key="cases_suite").set_value(name).run()
        name = f"caps-{round_}"
        at.text_input(key="cases_save_name").set_value(name)
        at.button(key="do_cases_save").click().run()
        assert not at.exception, at.exception
        [case] = store.suite_cases(store.get_suite(name).id)
        assert (case.expected, case.assertions) == ("Paris", [{"type": "icontains", "value": "Paris"}])
        at.run()
