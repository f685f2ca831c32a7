"""Streamlit entry point: `st.navigation` over the pages in pages/; shared state lives in st.session_state."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from services import database_label
from settings import get_settings
from ui.common import active_runs_panel, engine_status

# The icon is a file in the repository: a material-icon favicon is fetched from a font CDN on every load.
st.set_page_config(
    page_title="Prompt workbench",
    page_icon=str(Path(__file__).parent / "assets" / "favicon.png"),
    layout="wide",
)

# Material icons: they need no emoji font (a bare Chromium shows emoji as empty boxes).
PAGES = [
    st.Page("pages/build.py", title="Build", icon=":material/construction:", default=True),
    st.Page("pages/playground.py", title="Playground", icon=":material/tune:"),
    st.Page("pages/test_cases.py", title="Test cases", icon=":material/checklist:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/play_circle:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/review.py", title="Review", icon=":material/rate_review:"),
    st.Page("pages/optimize.py", title="Optimize", icon=":material/auto_fix_high:"),
    st.Page("pages/redteam.py", title="Red team", icon=":material/shield:"),
    st.Page("pages/engine.py", title="Engine", icon=":material/memory:"),
    st.Page("pages/export.py", title="Export", icon=":material/ios_share:"),
]

# The menu is drawn here rather than by st.navigation: with a pages/ folder, Streamlit shows its own listing of the
# folder's files until this script has run (`client.showSidebarNavigation = false` turns that off, and with it
# st.navigation's menu).
page = st.navigation(PAGES, position="hidden")
with st.sidebar:
    for entry in PAGES:
        st.page_link(entry)
    st.divider()
    settings = get_settings()
    status = engine_status(timeout=0.5)
    if status:
        st.caption(f":material/check_circle: engine: {status['card']['id']}")
    else:
        st.caption(f":material/radio_button_unchecked: engine not running at {settings.engine_url}")
    st.caption(f"database: {database_label()}")
    active_runs_panel()
page.run()
