"""Test cases: suites and an editable table of their cases; import CSV, JSONL or promptfoo YAML with the
validation error shown in place (nothing is written unless the whole file is valid)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from pages.common import db
from prompting.assertions import check_type
from prompting.errors import PromptingError
from prompting.suites import load_suite
from store import queries, runs

st.title("🧪 Test cases")

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
            suite = load_suite(path)
            imported = runs.import_suite(suite, name=import_name or None, engine=db())
        except (PromptingError, queries.StoreError) as exc:
            st.error(f"Nothing was imported. {exc}")
        else:
            st.success(
                f"Imported {len(suite.cases)} tests, {len(imported.version_ids)} prompts and "
                f"{len(imported.provider_ids)} providers."
            )

st.subheader("Suites")
suites = queries.list_suites(db())
if not suites:
    st.info("No suites yet: import one above, or create one below.")
names = [s.name for s, _ in suites]
counts = {s.name: n for s, n in suites}
selected = st.selectbox(
    "Suite",
    ["(new suite)", *names],
    key="cases_suite",
    format_func=lambda n: n if n == "(new suite)" else f"{n} ({counts[n]} cases)",
)
rows = []
if selected != "(new suite)":
    suite_row = queries.get_suite(selected, db())
    rows = [
        {
            "description": c.description,
            "vars": json.dumps(c.vars, ensure_ascii=False),
            "expected": c.expected or "",
            "assertions": json.dumps(c.assertions, ensure_ascii=False),
            "tags": ", ".join(c.tags),
        }
        for c in queries.suite_cases(suite_row.id, db())
    ]
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
    cases, problems = [], []
    for number, row in enumerate(edited.fillna("").to_dict("records"), start=1):
        try:
            variables = json.loads(row["vars"] or "{}")
            assertions = json.loads(row["assertions"] or "[]")
            if not isinstance(variables, dict) or not isinstance(assertions, list):
                raise ValueError("vars must be a JSON object and assertions a JSON list")
        except (json.JSONDecodeError, ValueError) as exc:
            problems.append(f"row {number}: {exc}")
            continue
        bad = [check_type(str(a.get("type", ""))) for a in assertions if isinstance(a, dict)]
        problems += [f"row {number}: {b}" for b in bad if b]
        if row["expected"]:
            assertions.append({"type": "equals", "value": row["expected"]})
        cases.append(
            {
                "description": row["description"],
                "vars": variables,
                "expected": row["expected"] or None,
                "assertions": assertions,
                "tags": [t.strip() for t in row["tags"].split(",") if t.strip()],
            }
        )
    if problems:
        st.error("Nothing was saved. " + "; ".join(problems))
    elif not save_name.strip():
        st.error("Give the suite a name.")
    else:
        try:
            queries.save_suite(save_name.strip(), cases, engine=db())
            st.success(f"Saved suite {save_name.strip()} with {len(cases)} cases.")
        except queries.StoreError as exc:
            st.error(str(exc))
