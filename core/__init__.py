"""Play Fair explorer core: frame attributions (Element Shapley Values) for video models.

This package never imports Streamlit; the app, the CLI (``python -m core``) and the
benchmarks all drive it.
"""

__version__ = "0.1.0"
