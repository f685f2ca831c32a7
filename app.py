"""Streamlit entry point: `st.navigation` over the pages in pages/; shared state lives in st.session_state."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Prompt workbench", page_icon="🧪", layout="wide")

PAGES = [
    st.Page("pages/build.py", title="Build", icon="🧱", default=True),
]

st.navigation(PAGES).run()
