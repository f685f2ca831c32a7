"""The Streamlit pages: one file per screen (run by app.py through st.navigation)."""
