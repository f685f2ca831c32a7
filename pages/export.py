"""Export: a stored version or a library template as a `.j2` template (a version's settings included), an OpenAI
chat prompt template with placeholders, a Chat Completions request body (with a curl line), a promptfoo config;
and a run as a self-contained HTML report. Each with a preview and a download."""

from __future__ import annotations

import json

import streamlit as st

from prompting.templates import library_names
from services import exports, reports, runs
from services import suites as suites_service
from services import versions as versions_service
from services.errors import PromptingError, StoreError
from services.promptfoo_export import export_promptfoo
from ui.common import run_label, store, version_labels

st.title(":material/ios_share: Export")
db = store()


def pick() -> str | None:
    kind = st.radio("Export", ["Stored version", "Library template"], horizontal=True, key="export_kind")
    if kind == "Stored version":
        labels = list(version_labels())
        if not labels:
            st.info("No stored version yet: save one on the Build page, or export a library template.")
            return None
        newest = versions_service.newest_label(db)
        return st.selectbox(
            "Version", labels, index=labels.index(newest) if newest in labels else 0, key="export_ref"
        )
    return "library:" + st.selectbox("Library template", library_names(), key="export_library")


def stem(ref: str) -> str:
    return ref.removeprefix("library:").replace("@", "_")


def j2_tab(ref: str) -> None:
    text, note = exports.export_j2(db, ref)
    if note:
        st.caption(note)
    offer(".j2 template", text, f"{stem(ref)}.j2", "text/plain", "jinja")


def offer(label: str, text: str, file_name: str, mime: str, language: str | None = None) -> None:
    """A download button for an export, and the text itself below it when `language` is given."""
    st.download_button(label, text, file_name=file_name, mime=mime, icon=":material/download:")
    if language:
        st.code(text, language=language)


def openai_tab(ref: str) -> None:
    text, _ = exports.export_openai(db, ref)
    st.caption(
        "The messages with each free variable as a `{{ name }}` placeholder (delimiters and guardrails "
        "applied), the variables with their descriptions, and the values fixed in the structure."
    )
    offer("OpenAI prompt template", text, f"{stem(ref)}.json", "application/json", "json")


def request_tab(ref: str) -> None:
    template = json.loads(exports.export_openai(db, ref)[0])
    values = {}
    for var in template["variables"]:
        default = "" if var.get("default") is None else str(var["default"])
        values[var["name"]] = st.text_input(
            var["name"],
            default or str(var.get("example") or ""),
            key=f"export_var_{var['name']}",
            help=var.get("description"),
        )
    try:
        body = exports.request_body(db, ref, values)
    except PromptingError as exc:
        st.error(str(exc))
        return
    text = json.dumps(body, indent=2, ensure_ascii=False)
    offer("Request body", text, f"{stem(ref)}-request.json", "application/json", "json")
    st.markdown('**Copy as curl** (for a remote API add `-H "Authorization: Bearer $KEY"`)')
    st.code(exports.curl(body), language="bash")


def promptfoo_tab(ref: str) -> None:
    suites = list(suites_service.names(db))
    suite = st.selectbox(
        "Tests (their providers come along)", ["(none: one example test)", *suites], key="export_suite"
    )
    text, warnings = export_promptfoo(db, ref, None if suite.startswith("(none") else suite)
    for warning in warnings:
        st.warning(warning, icon=":material/info:")
    offer("promptfooconfig.yaml", text, "promptfooconfig.yaml", "text/yaml")
    st.caption(
        "Run it with `npx promptfoo@0.123.1 eval -c promptfooconfig.yaml` while `make run` serves the engine."
    )
    st.code(text, language="yaml")


def report_section() -> None:
    st.subheader("Run report")
    all_runs = runs.listing(db)
    if not all_runs:
        st.caption("No run yet.")
        return
    labels = {r.id: run_label(r) for r in all_runs}
    run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="export_run")
    with st.spinner("Writing the report…"):
        page = reports.html_report(reports.payload(db, run_id))
    offer("HTML report (one self-contained file)", page, f"{run_id}.html", "text/html")


ref = pick()
if ref:
    tabs = st.tabs([".j2", "OpenAI template", "Request body", "promptfoo"])
    for tab, draw in zip(tabs, (j2_tab, openai_tab, request_tab, promptfoo_tab), strict=True):
        with tab:
            try:
                draw(ref)
            except (PromptingError, StoreError) as exc:
                st.error(str(exc))
st.divider()
report_section()
