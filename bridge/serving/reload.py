"""`bridge serve --reload`, for model development: uvicorn's reloader runs the app in a fresh worker process,
again after each change to a .py or .yaml file in the manifest's, the model's or the current folder.

The worker is a fresh interpreter, so the app is named by an import string (`bridge.serving.reload:app`) and
what to serve travels in the environment (`BRIDGE_RELOAD`). Its uvicorn configuration is every server's
(`bridge.serving.server.uvicorn_config`: read timeout, connection cap, grace), plus the reloader's.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.supervisors import ChangeReload

from bridge.core.logs import configure_logging
from bridge.core.manifest import Manifest, ManifestError, load_manifest
from bridge.serving.app import create_app
from bridge.serving.server import uvicorn_config

SETTINGS = "BRIDGE_RELOAD"


def serve(manifest: Manifest, host: str, port: int, listening: socket.socket, log_level: str, log_format: str,
          playground: bool) -> None:
    """Run the reloader on `listening` until interrupted."""
    os.environ[SETTINGS] = json.dumps({"manifest": str(manifest.path), "log_level": log_level,
                                       "log_format": log_format, "playground": playground})
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # not a line per file written nearby
    config = uvicorn_config(f"{__name__}:app", manifest, host, port, log_level, factory=True, reload=True,
                            reload_dirs=watched_folders(manifest), reload_includes=["*.py", "*.yaml", "*.yml"])
    ChangeReload(config, target=uvicorn.Server(config).run, sockets=[listening]).run()


def app() -> Any:
    """The app, built in each fresh worker process.

    A manifest broken by an edit prints its one line and the reloader waits for the next change; a model that
    fails to load keeps the worker answering 503 with the reason (`/readyz`, and every platform route) until
    the next change.
    """
    settings = json.loads(os.environ[SETTINGS])
    configure_logging(settings["log_level"], settings["log_format"])
    try:
        return create_app(load_manifest(settings["manifest"]), playground=settings["playground"])
    except ManifestError as error:
        print(f"bridge: {error}", file=sys.stderr)
        sys.exit(2)


def watched_folders(manifest: Manifest) -> list[str]:
    """The manifest's folder and the model file's (uvicorn also watches the current folder)."""
    folders = {manifest.base_dir}
    target = (manifest.model.factory or "").rpartition(":")[0]
    if target.endswith(".py"):
        folders.add((manifest.base_dir / target).resolve().parent)
    return [str(folder) for folder in sorted(folders)]
