"""Serving the Gradio demo (app.py) on its own FastAPI app with uvicorn: what the demo needs
beyond Gradio's own launch().

- Each browser (or API client) gets a random session cookie; a file it uploads is readable by
  that session only (another session's request for it gets 404).
- Gradio's upload and cache folders live in a private (0700) folder per launch, removed at exit,
  so other local users cannot read uploads.
- SIGTERM and SIGINT stop the server and end the process through its cleanup.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["UploadOwners", "SessionFiles", "launch_folder", "create_server_app", "serve",
           "stop_on_signals", "MAX_UPLOAD", "SESSION_COOKIE"]

logger = logging.getLogger("app")

MAX_UPLOAD = "20mb"                   # larger uploads are refused before they fill the disk
SESSION_COOKIE = "rag_vqa_session"
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{32,64}")
_FILE_ROUTE = re.compile(r"/gradio_api/file[=/](.+)")


class UploadOwners:
    """Which browser session uploaded which file of Gradio's upload folder. A recorded upload is
    readable only by its uploaders; the images this app shows are written to folders of their own
    there (see :class:`Thumbnails`), which no upload can land in, and are readable by anyone."""

    def __init__(self) -> None:
        self._owners: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def record(self, session: str, paths: Sequence[str]) -> None:
        with self._lock:
            for path in paths:
                self._owners.setdefault(os.path.realpath(path), set()).add(session)

    def refuses(self, session: str | None, path: str) -> bool:
        with self._lock:
            owners = self._owners.get(os.path.realpath(path))
        return owners is not None and session not in owners


def launch_folder() -> Path:
    """A new private (0700) folder for this launch, holding Gradio's upload and cache folder, so
    other local users cannot read what visitors upload (the caller removes it at exit)."""
    root = Path(tempfile.mkdtemp(prefix="rag-vqa-demo-"))
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(root / "examples-cache")
    return root


class SessionFiles:
    """ASGI middleware: gives each browser (or API client) a random session cookie, records the
    files each session uploads, and answers 404 to file requests for another session's upload."""

    def __init__(self, app, owners: UploadOwners) -> None:
        self.app = app
        self.owners = owners

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.requests import cookie_parser
        from starlette.responses import PlainTextResponse

        cookie = "; ".join(v.decode("latin-1") for k, v in scope["headers"] if k == b"cookie")
        session = cookie_parser(cookie).get(SESSION_COOKIE, "")
        new = not _SESSION_ID.fullmatch(session)
        if new:  # the app downstream sees the session it is being given
            session = secrets.token_urlsafe(32)
            cookie = "; ".join(filter(None, [cookie, f"{SESSION_COOKIE}={session}"]))
        headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
        scope = {**scope, "headers": [*headers, (b"cookie", cookie.encode("latin-1"))]}
        route = _FILE_ROUTE.fullmatch(scope["path"])
        if route and self.owners.refuses(session, route.group(1)):
            return await PlainTextResponse("Not found", status_code=404)(scope, receive, send)
        uploading = scope["method"] == "POST" and scope["path"] == "/gradio_api/upload"
        start: dict = {}
        body: list[bytes] = []

        async def send_with_session(message) -> None:
            if message["type"] == "http.response.start":
                if new:
                    set_cookie = f"{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax"
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (b"set-cookie", set_cookie.encode())]}
                if uploading:  # held back until the upload is recorded
                    start.update(message)
                    return
            elif uploading and message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                if start.get("status") == 200:
                    self.owners.record(session, _paths(b"".join(body)))
                await send(start)
                message = {**message, "body": b"".join(body)}
            await send(message)

        await self.app(scope, receive, send_with_session)


def _paths(body: bytes) -> list[str]:
    """The paths an upload response lists (a JSON list of strings)."""
    try:
        paths = json.loads(body)
    except ValueError:
        paths = None
    return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []


def create_server_app(blocks, owners: UploadOwners):
    """A FastAPI app serving ``blocks`` behind :class:`SessionFiles`. Nothing outside Gradio's
    upload folder is served (no ``allowed_paths``); messages of Gradio's own input checks are
    shown (``show_error``): no exception of ours reaches Gradio."""
    import gradio as gr
    from fastapi import FastAPI

    app = gr.mount_gradio_app(FastAPI(docs_url=None, redoc_url=None, openapi_url=None), blocks,
                              path="/", allowed_paths=[], show_error=True, ssr_mode=False,
                              max_file_size=MAX_UPLOAD, enable_monitoring=False, mcp_server=False)
    # Gradio refuses input files from outside its upload folder only in an app it counts as
    # launched; without this, a payload naming any server file gets that file copied there.
    blocks.has_launched = True
    app.add_middleware(SessionFiles, owners=owners)
    return app


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM and SIGINT end the process through its cleanup, with the usual exit status.
    While serving, uvicorn handles both and raises them again once it has stopped."""
    raise SystemExit(128 + signum)


def stop_on_signals() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)


def serve(app, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT. Shutdown first ends Gradio's own endless streams (an open
    page's heartbeat), as Gradio's launch() does, so it never waits for them."""
    import uvicorn
    from gradio.routes import App

    mounted = [route.app for route in app.routes if isinstance(getattr(route, "app", None), App)]

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            for gradio_app in mounted:
                gradio_app.stop_event.set()
            await super().shutdown(sockets)

    logger.info("serving the demo on http://%s:%d", host, port)
    Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                          timeout_graceful_shutdown=3)).run()
