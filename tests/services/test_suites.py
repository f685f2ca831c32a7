"""Suites: import (immutable, reused when identical), edited rows to cases, and the Test cases page round trip."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from services import open_store, suites
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


def test_rows_become_cases_and_every_problem_names_its_row():
    rows = [
        {"description": "ok", "vars": '{"x": 1}', "expected": "1", "assertions": "[]", "tags": "a, b"},
        {"description": "bad json", "vars": "{x", "expected": "", "assertions": "[]", "tags": ""},
        {
            "description": "bad type",
            "vars": "{}",
            "expected": "",
            "assertions": '[{"type": "nope"}]',
            "tags": "",
        },
    ]
    cases, problems = suites.cases_from_rows(rows)
    assert (
        problems[0].startswith("row 2: Expecting property name")
        and problems[1] == "row 3: unknown assertion type 'nope'"
    )
    assert cases[0] == {
        "description": "ok",
        "vars": {"x": 1},
        "expected": "1",
        "assertions": [],
        "tags": ["a", "b"],
    }


def test_expected_is_asserted_once_at_run_time():
    store = open_store()
    suite = store.save_suite("s", [{"vars": {}, "expected": "Paris",
                                    "assertions": [{"type": "equals", "value": "Paris"}]},
                                   {"vars": {}, "expected": "Rome", "assertions": []}])  # fmt: skip
    first, second = (case_of(c) for c in store.suite_cases(suite.id))
    assert first.assertions == [{"type": "equals", "value": "Paris"}]
    assert second.assertions == [{"type": "equals", "value": "Rome"}]


def test_the_test_cases_page_saves_a_suite_twice_without_growing_its_assertions():
    store = open_store()
    store.save_suite("caps", [{"description": "france", "vars": {"country": "France"}, "expected": "Paris",
                               "assertions": [{"type": "icontains", "value": "Paris"}]}])  # fmt: skip
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("views/test_cases.py").run()
    name = "caps"
    for round_ in (1, 2):
        at.selectbox(key="cases_suite").set_value(name).run()
        name = f"caps-{round_}"
        at.text_input(key="cases_save_name").set_value(name).run()
        at.button(key="do_cases_save").click().run()
        assert not at.exception, at.exception
        [case] = store.suite_cases(store.get_suite(name).id)
        assert (case.expected, case.assertions) == ("Paris", [{"type": "icontains", "value": "Paris"}])
        at.run()
