"""The Streamlit pages: one file per screen, run by app.py through st.navigation. (Not named `pages/`: Streamlit
would list every file of a folder by that name before st.navigation takes over.)"""
