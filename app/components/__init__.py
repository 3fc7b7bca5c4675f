"""Small custom display components of the app (plain HTML/JS through Streamlit)."""
