"""Streamlit entry point: `st.navigation` over the pages in pages/; shared state lives in st.session_state."""

from __future__ import annotations

import streamlit as st

from pages.common import engine_status
from services import database_label
from settings import get_settings

st.set_page_config(page_title="Prompt workbench", page_icon="🧪", layout="wide")

PAGES = [
    st.Page("pages/build.py", title="Build", icon="🧱", default=True),
    st.Page("pages/playground.py", title="Playground", icon="🎛️"),
    st.Page("pages/test_cases.py", title="Test cases", icon="🧪"),
    st.Page("pages/runs.py", title="Runs", icon="🏃"),
    st.Page("pages/compare.py", title="Compare", icon="📊"),
    st.Page("pages/engine.py", title="Engine", icon="⚙️"),
    st.Page("pages/export.py", title="Export", icon="📦"),
]

page = st.navigation(PAGES)
with st.sidebar:
    settings = get_settings()
    status = engine_status(timeout=0.5)
    if status:
        st.caption(f"🟢 engine: {status['card']['id']}")
    else:
        st.caption(f"⚪ engine not running at {settings.engine_url}")
    st.caption(f"database: {database_label()}")
page.run()
