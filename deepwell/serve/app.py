"""The playground's web server: a Starlette app, one WebSocket per session for the stream, plain HTTP for actions.

Routes::

    GET  /                          the page (static ES modules under /static, no build step, no CDN)
    GET  /api/meta                  controls' choices, scenes, data files, limits
    POST /api/sessions              {"keys": {key: value}} -> a session (503 when --max-sessions are in use)
    POST /api/sessions/{id}/{play|pause|step|reset}
    POST /api/sessions/{id}/set     {"changes": {key: value}, "restart": false} -> the new spec, or 400 {"error", "key"}
    POST /api/sessions/{id}/scene   {"name": "vanishing"}
    POST /api/sessions/{id}/save    -> {"path": run folder}
    POST /api/upload?name=x.csv&target=y   the file as the body (size-limited), read by deepwell's CSV/NPZ readers
    WS   /ws/{id}                   the session's messages (data, status, frames); closing it ends the session

The server executes nothing the page sends except validated spec keys; files are read only under
``--data-dir`` and the upload folder; nothing is unpickled (NPZ with ``allow_pickle=False``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from deepwell.config import RunSpec, registry
from deepwell.data import build_dataset
from deepwell.errors import DeepwellError
from deepwell.serve.controls import apply_changes, command_line, spec_diff
from deepwell.serve.scenes import SCENES, scene_spec
from deepwell.serve.session import Session

__all__ = ["Playground", "create_app"]

STATIC = Path(__file__).parent / "static"
DATA_SUFFIXES = (".csv", ".npz")
CONNECT_GRACE = 30.0   # seconds a new session may wait for its WebSocket before it is freed
REAP_EVERY = 5.0
MAX_FILES = 200        # data files listed (a big --data-dir stays cheap to scan)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class Playground:
    """The server's state: the starting spec, folders, limits and the live sessions.

    Args:
        base: the spec a page without URL keys starts from.
        data_dir: the only folder (besides uploads) data files are read from.
        runs_dir: where "Save run" writes run folders.
        max_sessions: concurrent sessions (each one trains); more get a "busy" answer.
        max_upload_bytes: the largest upload accepted.
        idle_timeout: seconds without any action after which a session is freed.
    """

    base: RunSpec
    data_dir: Path
    runs_dir: Path
    max_sessions: int = 2
    max_upload_bytes: int = 10 * 2**20
    idle_timeout: float = 1800.0
    sessions: dict[str, Session] = field(default_factory=dict)
    connected: dict[str, bool] = field(default_factory=dict)
    created: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self.work = Path(tempfile.mkdtemp(prefix="deepwell-serve-"))
        self.upload_dir = self.work / "uploads"
        self.upload_dir.mkdir()

    @property
    def roots(self) -> list[Path]:
        return [self.data_dir, self.upload_dir]

    def open_session(self, keys: dict[str, str]) -> tuple[str, Session]:
        """A new session on ``keys`` (the URL's; applied to deepwell's defaults) or on the base spec.

        Raises:
            ControlError: a bad key in the URL. BusyError: every session slot is taken.
        """
        with self.lock:
            if len(self.sessions) >= self.max_sessions:
                raise BusyError(f"The playground is busy: {len(self.sessions)} of {self.max_sessions} sessions are training "
                                f"(deepwell serve --max-sessions {self.max_sessions}). Close another tab, or try again later.")
            sid = secrets.token_urlsafe(12)
            self.sessions[sid] = None  # the slot is taken while the session builds
        try:
            spec = apply_changes(RunSpec(), keys, self.roots) if keys else self.base
            session = Session(spec, self.roots, self.work / "sessions" / sid)
        except BaseException:
            with self.lock:
                self.sessions.pop(sid, None)
            raise
        with self.lock:
            self.sessions[sid], self.created[sid], self.connected[sid] = session, time.monotonic(), False
        return sid, session

    def close_session(self, sid: str) -> None:
        with self.lock:
            session = self.sessions.pop(sid, None)
            self.connected.pop(sid, None)
            self.created.pop(sid, None)
        if session is not None:
            session.close()

    def stale(self) -> list[str]:
        """Sessions to free: never connected within CONNECT_GRACE, or idle longer than idle_timeout."""
        now = time.monotonic()
        with self.lock:
            return [sid for sid, session in self.sessions.items() if session is not None and (
                (not self.connected.get(sid) and now - self.created.get(sid, now) > CONNECT_GRACE)
                or now - session.last_active > self.idle_timeout)]

    def shutdown(self) -> None:
        for sid in list(self.sessions):
            self.close_session(sid)
        shutil.rmtree(self.work, ignore_errors=True)


class BusyError(DeepwellError):
    """Every session slot is in use."""


def _error(error: Exception, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": str(error), "key": getattr(error, "key", None)}, status_code=status)


def _state(session: Session) -> dict[str, Any]:
    return {"spec": session.spec.to_dict(), "keys": spec_diff(session.spec), "command": command_line(session.spec)}


def create_app(playground: Playground) -> Starlette:
    """The ASGI app serving ``playground``."""

    def session_of(request: Request) -> Session:
        session = playground.sessions.get(request.path_params["sid"])
        if session is None:
            raise KeyError(request.path_params["sid"])
        session.last_active = time.monotonic()
        return session

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def meta(request: Request) -> JSONResponse:
        kinds = ("activation", "initializer", "normalization", "dropout", "optimizer", "schedule", "penalty", "preprocessing",
                 "augmentation")
        found = (p for p in playground.data_dir.rglob("*") if p.suffix in DATA_SUFFIXES and p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(playground.data_dir).parts))
        files = sorted(str(p.relative_to(playground.data_dir)) for p in itertools.islice(found, MAX_FILES))
        return JSONResponse({
            "choices": {kind: registry(kind).names() for kind in kinds},
            "datasets": ["moons", "circles", "spirals", "xor", "gaussians", "polynomial", "mnist1d", "digits"],
            "files": files, "max_upload_bytes": playground.max_upload_bytes,
            "scenes": [{"name": s.name, "title": s.title, "caption": s.caption} for s in SCENES.values()],
            "defaults": RunSpec().to_dict(),
        })

    async def create(request: Request) -> JSONResponse:
        body = await _json(request)
        keys = {str(k): str(v) for k, v in (body.get("keys") or {}).items()}
        try:
            sid, session = await run_in_threadpool(playground.open_session, keys)
        except BusyError as error:
            return _error(error, 503)
        except DeepwellError as error:
            return _error(error)
        return JSONResponse({"id": sid, **_state(session)})

    async def action(request: Request) -> JSONResponse:
        name = request.path_params["action"]
        commands = {"play": Session.play, "pause": Session.pause, "step": Session.step, "reset": Session.reset}
        if name not in commands:
            return JSONResponse({"error": f"Unknown action '{name}'; known: {', '.join(commands)}."}, status_code=404)
        await run_in_threadpool(commands[name], session_of(request))
        return JSONResponse({"ok": True})

    async def set_keys(request: Request) -> JSONResponse:
        session, body = session_of(request), await _json(request)
        changes = {str(k): str(v) for k, v in (body.get("changes") or {}).items()}
        try:
            kind = await run_in_threadpool(session.update, changes, bool(body.get("restart")))
        except DeepwellError as error:
            return _error(error)
        return JSONResponse({"kind": kind, **_state(session)})

    async def scene(request: Request) -> JSONResponse:
        session, body = session_of(request), await _json(request)
        try:
            spec = scene_spec(str(body.get("name")))
            await run_in_threadpool(session.replace, spec)
        except DeepwellError as error:
            return _error(error)
        return JSONResponse({"scene": SCENES[str(body["name"])].caption, **_state(session)})

    async def save(request: Request) -> JSONResponse:
        session = session_of(request)
        try:
            path = await run_in_threadpool(session.save, playground.runs_dir)
        except DeepwellError as error:
            return _error(error)
        return JSONResponse({"path": str(path)})

    async def upload(request: Request) -> JSONResponse:
        return await _upload(request, playground)

    async def stream(websocket: WebSocket) -> None:
        await _stream(websocket, playground)

    routes = [
        Route("/", index), Route("/api/meta", meta), Route("/api/sessions", create, methods=["POST"]),
        Route("/api/sessions/{sid}/set", set_keys, methods=["POST"]), Route("/api/sessions/{sid}/scene", scene, methods=["POST"]),
        Route("/api/sessions/{sid}/save", save, methods=["POST"]),
        Route("/api/sessions/{sid}/{action}", action, methods=["POST"]), Route("/api/upload", upload, methods=["POST"]),
        WebSocketRoute("/ws/{sid}", stream), Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def reaper() -> None:
        while True:
            await asyncio.sleep(REAP_EVERY)
            for sid in playground.stale():
                await run_in_threadpool(playground.close_session, sid)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        task = asyncio.create_task(reaper())
        yield
        task.cancel()
        await run_in_threadpool(playground.shutdown)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={KeyError: _unknown_session})
    app.state.playground = playground
    return app


async def _unknown_session(request: Request, error: KeyError) -> JSONResponse:
    return JSONResponse({"error": "This session has ended (closed tab, idle too long, or server restart); reload the page."},
                        status_code=404)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


async def _upload(request: Request, playground: Playground) -> JSONResponse:
    """Store a CSV/NPZ body (at most max_upload_bytes, counted while reading) and check it with deepwell's readers."""
    name = _SAFE_NAME.sub("_", Path(request.query_params.get("name", "")).name)
    target = request.query_params.get("target", "target")
    if Path(name).suffix.lower() not in DATA_SUFFIXES:
        return _error(DeepwellError(f"Upload '{name}' is not a .csv or .npz file; give a CSV table or a NumPy .npz archive."))
    if not re.fullmatch(r"[A-Za-z0-9_. -]+", target):
        return _error(DeepwellError(f"Target column '{target}' has unusual characters; rename the column (letters, digits, _)."))
    limit = playground.max_upload_bytes
    if int(request.headers.get("content-length") or 0) > limit:
        return _error(DeepwellError(f"Upload too large: over {limit // 2**20} MiB (deepwell serve --max-upload-mb)."), 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # counted as it arrives: a wrong content-length cannot get more through
            return _error(DeepwellError(f"Upload too large: over {limit // 2**20} MiB (deepwell serve --max-upload-mb)."), 413)
        chunks.append(chunk)
    path = playground.upload_dir / f"{secrets.token_hex(4)}-{name}"
    path.write_bytes(b"".join(chunks))
    source = f"csv:path={path},target={target}" if path.suffix.lower() == ".csv" else f"npz:path={path}"
    try:
        await run_in_threadpool(build_dataset, source, seed=0)
    except DeepwellError as error:
        path.unlink(missing_ok=True)
        return _error(DeepwellError(f"{name}: {error}"))
    return JSONResponse({"source": source})


async def _stream(websocket: WebSocket, playground: Playground) -> None:
    """Send the session's messages as they come; the socket closing (tab closed) ends the session."""
    sid = websocket.path_params["sid"]
    session = playground.sessions.get(sid)
    await websocket.accept()
    if session is None:
        await websocket.send_text(json.dumps({"type": "ended", "message": "This session has ended; reload the page."}))
        await websocket.close()
        return
    playground.connected[sid] = True
    loop, wake = asyncio.get_running_loop(), asyncio.Event()
    session.notify = lambda: loop.call_soon_threadsafe(wake.set)

    async def send() -> None:
        while True:
            for message in session.take():
                await websocket.send_text(_dumps(message))
            await wake.wait()
            wake.clear()

    async def receive() -> None:
        while True:
            if (await websocket.receive())["type"] == "websocket.disconnect":
                return

    tasks = [asyncio.create_task(send()), asyncio.create_task(receive())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks:
            task.cancel()
        session.notify = lambda: None
        # In a thread of its own, not awaited: a cancelled handler (server shutdown) still ends the session's training.
        threading.Thread(target=playground.close_session, args=(sid,), name=f"close-{sid}").start()


def _dumps(message: dict[str, Any]) -> str:
    """Compact JSON; NaN and infinities (a diverged loss) become null, which the browser's JSON.parse accepts."""
    try:
        return json.dumps(message, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite(message), separators=(",", ":"), default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
