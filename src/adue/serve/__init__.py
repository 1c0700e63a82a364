"""Serve an uncertainty bundle over HTTP (FastAPI + uvicorn, the ``adue[serve]`` extra).

:func:`create_app` builds the app around a loaded classifier; :class:`MicroBatcher` groups
concurrent requests into one model call; ``adue serve BUNDLE`` runs it under uvicorn.
"""

from adue.serve.app import ServeConfig, app_from_env, create_app
from adue.serve.batcher import MicroBatcher

__all__ = ["MicroBatcher", "ServeConfig", "app_from_env", "create_app"]
