"""Test cases: import a suite (CSV, JSONL or promptfoo YAML; nothing is written unless the whole file is valid),
or edit one as data — a column per variable, an assertions table with the supported types — and save it as a new
suite (suites are immutable: runs point at their cases)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from prompting.templates import library_names, load
from services import case_editor, suites
from services.errors import PromptingError, StoreError
from views.common import store

NEW = "(new suite)"
st.title(":material/checklist: Test cases")
db = store()


def import_section() -> None:
    st.subheader("Import a suite")
    upload = st.file_uploader(
        "promptfooconfig YAML, CSV or JSONL", type=["yaml", "yml", "csv", "jsonl"], key="upload_cases"
    )
    name = st.text_input("Suite name (default: the file name)", key="cases_import_name")
    if upload is None or not st.button(
        "Validate and import", key="do_cases_import", icon=":material/upload:"
    ):
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / upload.name
        path.write_bytes(upload.getvalue())
        try:
            imported = suites.import_file(db, path, name or None)
        except (PromptingError, StoreError) as exc:
            st.error(f"Nothing was imported. {exc}")
            return
    st.session_state["cases_suite"] = imported.name  # the imported suite is the one shown below
    st.success(f"Imported {imported.cases} tests, {len(imported.version_ids)} prompts and "
               f"{len(imported.provider_ids)} providers as suite {imported.name}.")  # fmt: skip


def pick_suite() -> str:
    listed = db.list_suites()
    counts = {s.name: n for s, n in listed}
    names = [NEW, *counts]
    if st.session_state.get("cases_suite") not in names:
        recent = suites.recent_suite(db)
        st.session_state["cases_suite"] = recent if recent in names else NEW
    return st.selectbox("Suite", names, key="cases_suite",
                        format_func=lambda n: n if n == NEW else f"{n} ({counts[n]} cases)")  # fmt: skip


def editors(selected: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    templates = ["(none)", *library_names()]
    extra = st.selectbox("Add a column for each variable of", templates, key="cases_template",
                         help="The variables the prompt you will run needs.")  # fmt: skip
    extra_vars = [v.name for v in load(extra).variables if v.required] if extra != "(none)" else []
    data = case_editor.tables(db, None if selected == NEW else selected, extra_vars)
    columns = ["Description", *data.variables, "Expected", "Threshold", "Tags"]
    st.markdown(
        "**Cases** — one row per case; a value in `[…]` or `{…}` is read as JSON (start it with `'` to keep "
        "it as text)"
    )
    cases = st.data_editor(pd.DataFrame(data.cases, columns=columns), num_rows="dynamic", width="stretch",
                           key=f"grid_cases_{selected}_{extra}",
                           column_config={"Threshold": st.column_config.NumberColumn(min_value=0.0, max_value=1.0)})  # fmt: skip
    st.markdown("**Assertions** — `Case` is the case's row number above; `Expected` adds an `equals` check")
    assertions = st.data_editor(
        pd.DataFrame(data.assertions, columns=list(case_editor.ASSERTION_COLUMNS)), num_rows="dynamic",
        width="stretch", key=f"grid_asserts_{selected}",
        column_config={"Case": st.column_config.NumberColumn(min_value=1, step=1),
                       "Type": st.column_config.SelectboxColumn(options=list(case_editor.TYPES), required=True),
                       "Weight": st.column_config.NumberColumn(min_value=0.0, default=1.0)})  # fmt: skip
    return cases, assertions, data.variables


import_section()
st.subheader("Suites")
selected = pick_suite()
cases_frame, assertions_frame, variables = editors(selected)
save_name = st.text_input("Save as (suites are immutable: a changed table becomes a new suite)",
                          value="" if selected == NEW else f"{selected}-edited", key="cases_save_name")  # fmt: skip
if st.button("Save suite", type="primary", key="do_cases_save", icon=":material/save:"):
    cases, problems = case_editor.cases_from_tables(cases_frame.to_dict("records"), assertions_frame.to_dict("records"),
                                                    [c for c in cases_frame.columns if c not in case_editor.CASE_FIELDS])  # fmt: skip
    if problems:
        st.error("Nothing was saved. " + "; ".join(problems))
    else:
        try:
            suites.save_cases(db, save_name, cases)
            st.success(f"Saved suite {save_name.strip()} with {len(cases)} cases.")
        except StoreError as exc:
            st.error(f"Nothing was saved. {exc}")
