"""Serving: an OpenAI-compatible HTTP server over one loaded pair (see serve/app.py)."""
