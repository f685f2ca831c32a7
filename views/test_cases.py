"""Test cases: suites and an editable table of their cases; import CSV, JSONL or promptfoo YAML with the
validation error shown in place (nothing is written unless the whole file is valid)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from services import suites
from services.errors import PromptingError, StoreError
from views.common import store

st.title(":material/checklist: Test cases")

st.subheader("Import a suite")
upload = st.file_uploader(
    "promptfooconfig YAML, CSV or JSONL", type=["yaml", "yml", "csv", "jsonl"], key="upload_cases"
)
import_name = st.text_input("Suite name (default: the file name)", key="cases_import_name")
if upload is not None and st.button("Validate and import", key="do_cases_import"):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / upload.name
        path.write_bytes(upload.getvalue())
        try:
            imported = suites.import_file(store(), path, import_name or None)
        except (PromptingError, StoreError) as exc:
            st.error(f"Nothing was imported. {exc}")
        else:
            st.success(
                f"Imported {imported.cases} tests, {len(imported.version_ids)} prompts and "
                f"{len(imported.provider_ids)} providers."
            )

st.subheader("Suites")
suite_list = store().list_suites()
if not suite_list:
    st.info("No suites yet: import one above, or create one below.")
names = [s.name for s, _ in suite_list]
counts = {s.name: n for s, n in suite_list}
selected = st.selectbox(
    "Suite",
    ["(new suite)", *names],
    key="cases_suite",
    format_func=lambda n: n if n == "(new suite)" else f"{n} ({counts[n]} cases)",
)
rows = [] if selected == "(new suite)" else suites.case_rows(store(), selected)
frame = pd.DataFrame(rows, columns=["description", "vars", "expected", "assertions", "tags"])
st.caption(
    "vars and assertions are JSON (assertions: a list of {type, value, threshold, weight}); a plain "
    "`expected` value adds an equals assertion."
)
edited = st.data_editor(frame, num_rows="dynamic", key=f"grid_cases_{selected}", width="stretch")

save_name = st.text_input(
    "Save as (suites are immutable: a changed table becomes a new suite)",
    value="" if selected == "(new suite)" else f"{selected}-edited",
    key="cases_save_name",
)
if st.button("Save suite", type="primary", key="do_cases_save"):
    cases, problems = suites.cases_from_rows(edited.fillna("").to_dict("records"))
    if problems:
        st.error("Nothing was saved. " + "; ".join(problems))
    else:
        try:
            suites.save_cases(store(), save_name, cases)
            st.success(f"Saved suite {save_name.strip()} with {len(cases)} cases.")
        except StoreError as exc:
            st.error(str(exc))
