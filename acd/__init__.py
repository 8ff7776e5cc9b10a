"""ACD builder engine: plain Python, importable without a Prefect server."""
