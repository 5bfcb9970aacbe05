"""HTTP serving: ``ofa serve`` (FastAPI + uvicorn), dynamic batching, metrics, a web page.

Needs the ``serve`` extra: ``pip install 'ofa-vl[serve]'``.
"""

from .app import create_app
from .batching import DynamicBatcher
from .server import bind, run_server, uvicorn_config
from .settings import ServeSettings, is_loopback

__all__ = ["create_app", "ServeSettings", "DynamicBatcher", "bind", "run_server",
           "uvicorn_config", "is_loopback"]
