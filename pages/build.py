"""Build page: pick a technique template, fill its variables, choose a delimiter style, preview the messages."""

from __future__ import annotations

import json

import streamlit as st

from prompting.delimiters import STYLES
from prompting.errors import PromptingError
from prompting.templates import library_names, load

st.title("Build a prompt")
name = st.selectbox("Technique template", library_names(), key="build_template")
template = load(name)
st.caption(template.description)
style = st.radio("Delimiter style", STYLES, horizontal=True, key="build_delimiter")
stage = st.selectbox("Stage", template.stages, key=f"build_stage_{name}") if template.stages else None

values = {}
for var in template.variables:
    default = var.default if var.default is not None else var.example
    if var.type == "list" or isinstance(default, list | dict):
        raw = st.text_area(
            var.name,
            json.dumps(default, indent=2) if default is not None else "[]",
            help=var.description,
            key=f"build_{name}_{var.name}",
        )
        try:
            values[var.name] = json.loads(raw)
        except json.JSONDecodeError as exc:
            st.error(f"{var.name}: invalid JSON at line {exc.lineno}: {exc.msg}")
    elif var.choices:
        values[var.name] = st.selectbox(
            var.name, var.choices, help=var.description, key=f"build_{name}_{var.name}"
        )
    else:
        values[var.name] = st.text_area(
            var.name,
            "" if default is None else str(default),
            help=var.description,
            key=f"build_{name}_{var.name}",
        )

try:
    messages = template.render(values, delimiter=style, stage=stage)
except PromptingError as exc:
    st.error(str(exc))
else:
    st.subheader("Preview")
    for message in messages:
        with st.chat_message(message["role"]):
            st.text(message["content"])
