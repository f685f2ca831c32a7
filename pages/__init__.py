"""The app's pages, one script per screen (app.py lists them in st.navigation). Each parses its widgets, makes one
services call per action and draws the result; what pages share lives in ui/."""
