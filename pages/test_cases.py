"""Test cases: import a suite (CSV, JSONL or promptfoo YAML; nothing is written unless the whole file is valid),
or edit one as data — a column per variable, an assertions table with the supported types — and save it as a new
suite (suites are immutable: runs point at their cases)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from prompting.templates import library_names
from services import case_editor, suites, traces
from services.errors import PromptingError, StoreError
from ui.common import store, version_labels

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
    st.success(
        f"Imported {imported.cases} tests, {len(imported.version_ids)} prompts and "
        f"{len(imported.provider_ids)} providers as suite {imported.name}."
    )


def traces_section() -> None:
    """Production logs to a suite of conversation cases (services/traces.py)."""
    with st.expander("Import production traces", icon=":material/history:"):
        upload = st.file_uploader(
            "A log file",
            type=["jsonl", "json"],
            key="upload_traces",
            help="chat: chat-completions JSONL (request + response per line); otel: OpenTelemetry GenAI spans "
            "(OTLP JSON); langfuse: a Langfuse trace or observation export.",
        )
        left, middle, right = st.columns(3)
        fmt = left.selectbox("Format", list(traces.FORMATS), key="traces_format")
        sample = middle.number_input("Keep (0: all)", min_value=0, value=200, step=50, key="traces_sample")
        name = right.text_input("Suite name (default: the file name)", key="traces_name")
        dedupe = st.checkbox("Remove near-duplicate inputs", value=True, key="traces_dedupe")
        scrub = st.checkbox("Scrub e-mail addresses, phone and card numbers", value=True, key="traces_scrub")
        skip_bad = st.checkbox("Skip malformed records (otherwise nothing is imported)", key="traces_skip")
        if upload is None or not st.button("Import traces", key="do_traces_import", icon=":material/upload:"):
            return
        options = traces.ImportOptions(
            fmt, name=name or None, sample=int(sample) or None, dedupe=dedupe, scrub=scrub, skip_bad=skip_bad
        )
        with tempfile.TemporaryDirectory() as tmp, st.spinner("Reading, de-duplicating and scrubbing…"):
            path = Path(tmp) / upload.name
            path.write_bytes(upload.getvalue())
            try:
                report = traces.import_traces(db, path, options)
            except (PromptingError, StoreError) as exc:
                st.error(f"Nothing was imported. {exc}")
                return
        st.session_state["cases_suite"] = report.suite
        scrubbed = ", ".join(f"{n} {kind}" for kind, n in sorted(report.scrubbed.items())) or "nothing"
        st.success(
            f"Imported {report.kept} conversations from {report.read} calls as suite {report.suite} "
            f"({report.duplicates} near-duplicates removed, {len(report.bad)} malformed records skipped; "
            f"scrubbed {scrubbed}). Versions: {', '.join(report.versions) or 'none'}; providers: "
            f"{', '.join(report.providers) or 'none'}."
        )
        for bad in (report.bad + report.skipped)[:20]:
            st.caption(f"skipped: {bad}")


def conversation_section(selected: str) -> None:
    """A conversation case typed turn by turn, added to the selected suite as a new suite."""
    with st.expander("Add a conversation case", icon=":material/forum:"):
        st.caption(
            "A user turn not followed by an assistant turn is answered by the model; an assistant turn is fixed "
            "history. An assertion on a row judges the model's answer to that turn."
        )
        with st.form("conversation_form", enter_to_submit=False, border=False):
            description = st.text_input("Description", key="conv_description")
            turns = st.data_editor(
                numbered(case_editor.blank_turns(BLANK_ROWS + 1), list(case_editor.TURN_COLUMNS)),
                num_rows="fixed",
                width="stretch",
                key=f"grid_turns_{st.session_state.get('conv_generation', 0)}",
                column_config={
                    "Role": st.column_config.SelectboxColumn(options=["user", "assistant"], default="user"),
                    **text_columns(["Content", "Assert type", "Assert value"]),
                },
            )
            target = st.text_input(
                "Save as", value=f"{selected}-edited" if selected != NEW else "", key="conv_save_name"
            )
            added = st.form_submit_button("Add to suite", icon=":material/add_comment:", key="do_conv_add")
        if added:
            add_conversation(selected, description, turns, target)


def add_conversation(selected: str, description: str, turns: pd.DataFrame, target: str) -> None:
    case, problems = case_editor.conversation_case(description, turns.to_dict("records"))
    if problems:
        st.error("Nothing was saved. " + "; ".join(problems))
        return
    try:
        existing = case_editor.stored_cases(db, None if selected == NEW else selected)
        suites.save_cases(db, target, [*existing, case])
    except StoreError as exc:
        st.error(f"Nothing was saved. {exc}")
        return
    st.session_state["conv_generation"] = st.session_state.get("conv_generation", 0) + 1
    st.session_state["cases_saved"] = target.strip()
    st.session_state["cases_message"] = f"Saved suite {target.strip()} with {len(existing) + 1} cases."
    st.rerun()


BLANK_ROWS = 5  # empty rows under the cases and the assertions, to type into (and "More rows" adds as many)


def pick_suite() -> str:
    counts = suites.names(db)
    names = [NEW, *counts]
    if "cases_saved" in st.session_state:  # a save just happened: the picker follows the saved suite
        st.session_state["cases_suite"] = st.session_state.pop("cases_saved")
        default_save_name()
    if st.session_state.get("cases_suite") not in names:
        recent = suites.recent_suite(db)
        st.session_state["cases_suite"] = recent if recent in names else NEW
    return st.selectbox(
        "Suite",
        names,
        key="cases_suite",
        on_change=default_save_name,
        format_func=lambda n: n if n == NEW else f"{n} ({counts[n]} cases)",
    )


def default_save_name() -> None:
    """A suite is saved under a new name: '<suite>-edited' for a stored one, a name to type for a new one."""
    selected = st.session_state.get("cases_suite", NEW)
    st.session_state["cases_save_name"] = "" if selected == NEW else f"{selected}-edited"


def prompt_variables() -> tuple[str, list[str], list]:
    """The prompt the cases are for (a saved version or a library template): its variables get columns, and
    what a blank cell falls back to is shown beside the grid."""
    options = ["(none)", *version_labels(), *(f"library:{n}" for n in library_names())]
    ref = st.selectbox(
        "Columns for the variables of",
        options,
        key="cases_template",
        help="The prompt you will run: a column for each variable a case must set; the values "
        "blank cells fall back to are listed below.",
    )
    if ref == "(none)":
        return ref, [], []
    required, found = case_editor.fallbacks(db, ref)
    return ref, required, found


def fallback_table(ref: str, found: list) -> None:
    if not found:
        return
    rows = [
        {"variable": f.name, "a blank cell uses": "" if f.value is None else str(f.value), "from": f.source}
        for f in found
    ]
    with st.expander(
        f"What blank cells fall back to when {ref} runs", expanded=True, icon=":material/input:"
    ):
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def text_columns(names: list[str]) -> dict:
    """Every column edits text that starts empty ("" rather than None, which the grid shows as 'None')."""
    return {name: st.column_config.TextColumn(default="") for name in names}


def draft(selected: str, ref: str, required: list[str]) -> case_editor.Tables:
    """The tables being edited: the stored suite (or nothing) with blank rows, until "More rows" keeps the edits
    so far and adds blank rows."""
    key = f"cases_draft|{selected}|{ref}"
    if key not in st.session_state:
        st.session_state[key] = case_editor.tables(
            db, None if selected == NEW else selected, required, BLANK_ROWS
        )
    return st.session_state[key]


def editors(selected: str, ref: str, required: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The two grids, in a form and with a fixed set of rows: an edit does not rerun the page (a rerun under the
    cursor lost keystrokes and moved the selection), and a row is typed into where it already is (the grid's
    add-row line dropped the first keystroke). Blank rows are not saved; "More rows" adds blank rows."""
    data = draft(selected, ref, required)
    generation = st.session_state.get("cases_generation", 0)  # a new grid (fresh edit state) per "More rows"
    columns = ["Description", *data.variables, "Expected", "Threshold", "Tags"]
    st.markdown(
        "**Cases** — one row per case; a value in `[…]` or `{…}` is read as JSON (start it with `'` to keep "
        "it as text); blank rows are not saved, and clearing a row removes its case"
    )
    cases = st.data_editor(
        numbered(data.cases, columns),
        num_rows="fixed",
        width="stretch",
        key=f"grid_cases_{selected}_{ref}_{generation}",
        column_config=text_columns(columns),
    )
    st.markdown(
        "**Assertions** — `Case` is the row number of the case above; `Expected` adds an `equals` check"
    )
    # a text column: a selectbox column shows 'None' in every empty cell; a mistyped type is named on save
    st.caption("Types: " + ", ".join(case_editor.ASSERTION_TYPE_NAMES) + "; any of them negated with `not-`.")
    assertions = st.data_editor(
        numbered(data.assertions, list(case_editor.ASSERTION_COLUMNS)),
        num_rows="fixed",
        width="stretch",
        key=f"grid_asserts_{selected}_{generation}",
        column_config={
            **text_columns(["Case", "Turn", "Type", "Value", "Threshold"]),
            "Weight": st.column_config.NumberColumn(min_value=0.0, default=1.0),
        },
    )
    return cases, assertions, data.variables


def numbered(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """A table whose index is the row number people see and name (`Case` in assertions, rows in errors)."""
    return pd.DataFrame(rows, columns=columns, index=pd.RangeIndex(1, len(rows) + 1, name="row"))


def more_rows(
    selected: str, ref: str, cases: pd.DataFrame, assertions: pd.DataFrame, variables: list[str]
) -> None:
    """Keep the edits so far as the draft and add BLANK_ROWS blank rows to each table."""
    grown = case_editor.Tables(variables, cases.to_dict("records"), assertions.to_dict("records"))
    blank = case_editor.tables(db, None, variables, BLANK_ROWS)
    grown.cases += blank.cases
    grown.assertions += blank.assertions
    st.session_state[f"cases_draft|{selected}|{ref}"] = grown
    st.session_state["cases_generation"] = st.session_state.get("cases_generation", 0) + 1
    st.rerun()


def save(selected: str, cases_frame: pd.DataFrame, assertions_frame: pd.DataFrame, save_name: str) -> None:
    variables = [c for c in cases_frame.columns if c not in case_editor.CASE_FIELDS]
    cases, problems = case_editor.cases_from_tables(
        cases_frame.to_dict("records"), assertions_frame.to_dict("records"), variables
    )
    if problems:
        st.error("Nothing was saved. " + "; ".join(problems))
        return
    try:
        suites.save_cases(db, save_name, cases)
    except StoreError as exc:
        st.error(f"Nothing was saved. {exc}")
        return
    for key in [k for k in st.session_state if str(k).startswith(f"cases_draft|{selected}|")]:
        del st.session_state[key]  # the saved suite is the next draft's source
    st.session_state["cases_generation"] = st.session_state.get("cases_generation", 0) + 1
    st.session_state["cases_saved"] = save_name.strip()
    st.session_state["cases_message"] = f"Saved suite {save_name.strip()} with {len(cases)} cases."
    st.rerun()


import_section()
traces_section()
st.subheader("Suites")
selected = pick_suite()
ref, required, found = prompt_variables()
with st.form("cases_form", enter_to_submit=False, border=False):
    cases_frame, assertions_frame, variables = editors(selected, ref, required)
    if "cases_save_name" not in st.session_state:
        default_save_name()
    save_name = st.text_input(
        "Save as (suites are immutable: a changed table becomes a new suite)", key="cases_save_name"
    )
    left, right = st.columns([1, 4])
    submitted = left.form_submit_button(
        "Save suite", type="primary", icon=":material/save:", key="do_cases_save"
    )
    grow = right.form_submit_button(f"More rows (+{BLANK_ROWS})", icon=":material/add:", key="do_cases_rows")
fallback_table(ref, found)
if "cases_message" in st.session_state:
    st.success(st.session_state.pop("cases_message"))
if grow:
    more_rows(selected, ref, cases_frame, assertions_frame, variables)
if submitted:
    save(selected, cases_frame, assertions_frame, save_name)
conversation_section(selected)
