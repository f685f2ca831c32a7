"""Export: any stored version (or library template) as `.j2`, OpenAI messages JSON or promptfoo YAML."""

from __future__ import annotations

import streamlit as st

from prompting.templates import library_names
from services import exports
from services.errors import PromptingError, StoreError
from views.common import store, version_labels

st.title(":material/ios_share: Export")
labels = list(version_labels())
choices = labels + [n for n in library_names() if n not in labels]
if not choices:
    st.info("Nothing to export yet.")
    st.stop()
ref = st.selectbox(
    "Version or library template",
    choices,
    key="export_ref",
    help="Stored versions first (name@vN), then the library.",
)
db = store()
suites = [s.name for s, _ in db.list_suites()]
suite = st.selectbox("Tests to include in the promptfoo file", ["(none)", *suites], key="export_suite")
stem = ref.replace("@", "_")
try:
    j2 = exports.export_j2(db, ref)
    promptfoo = exports.export_promptfoo(db, ref, None if suite == "(none)" else suite)
except (PromptingError, StoreError) as exc:
    st.error(str(exc))
    st.stop()
col1, col2, col3 = st.columns(3)
col1.download_button(
    ".j2 template", j2, file_name=f"{stem}.j2", mime="text/plain", icon=":material/download:"
)
try:
    openai_json = exports.export_openai(db, ref, {})
    col2.download_button(
        "OpenAI messages",
        openai_json,
        file_name=f"{stem}.json",
        mime="application/json",
        icon=":material/download:",
    )
except PromptingError as exc:
    openai_json = None
    col2.warning(f"OpenAI messages need every variable bound: {exc}")
col3.download_button(
    "promptfooconfig.yaml",
    promptfoo,
    file_name="promptfooconfig.yaml",
    mime="text/yaml",
    icon=":material/download:",
)
tab1, tab2, tab3 = st.tabs([".j2", "OpenAI JSON", "promptfoo YAML"])
tab1.code(j2, language="jinja")
tab2.code(openai_json or "(variables missing)", language="json")
tab3.code(promptfoo, language="yaml")
