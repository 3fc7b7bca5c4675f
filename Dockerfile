# Play Fair explorer: the app on the built-in demo, served on port 8501.
#   docker build -t playfair . && docker run --rm -p 8501:8501 playfair
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first, so code edits do not reinstall them. gulpio2 goes in with
# --no-deps: it declares Pillow-SIMD, whose needs requirements.txt covers with Pillow.
COPY requirements.txt requirements-gulpio2.txt pyproject.toml ./
COPY core/__init__.py core/__init__.py
RUN pip install -r requirements.txt && pip install --no-deps -r requirements-gulpio2.txt

COPY . .
RUN pip install --no-deps -e .

# Build the demo now (dataset, CNN, features, priors, heads), so the first page load is warm.
RUN python -m core demo

EXPOSE 8501
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health')"
# Inside the container the server must listen on all interfaces; outside it, the
# project's .streamlit/config.toml keeps it on localhost.
CMD ["streamlit", "run", "app/main.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
