"""The Streamlit explorer (served by ``streamlit run app/main.py``): the app's modules, installed
with ``core`` by ``pip install -e .``; the pages it serves are the scripts in ``pages/``."""
