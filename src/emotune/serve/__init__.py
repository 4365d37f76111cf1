"""`emotune serve`: a REST API (FastAPI on uvicorn) and a web page over one Recognizer loaded at start-up.

    from emotune.serve import ServeConfig, create_app
    app = create_app(ServeConfig(model=None))   # an ASGI app: uvicorn, or FastAPI's TestClient

Faces of concurrent requests are classified together (`batcher.MicroBatcher`); uploads stay in memory; every error is
JSON with a message. See docs/serve.md.
"""
from __future__ import annotations

from .app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
