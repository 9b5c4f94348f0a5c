"""The playground: ``deepwell serve``, every lecture idea live in the browser, on deepwell's real training.

One page per browser tab, one :class:`~deepwell.serve.session.Session` per page: a RunSpec whose
``fit`` runs in a worker thread and streams what the page draws over a WebSocket. Controls are
spec keys (validated as ``--set``), the doctor's findings come with remedies as buttons, scenes
load one lecture idea each, the URL holds the spec, and "Save run" writes an ordinary run folder.
See docs/serve.md for the design (why Starlette + uvicorn).

Example::

    from deepwell.serve import serve
    serve(port=8000)          # http://127.0.0.1:8000
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deepwell.errors import missing_extra

__all__ = ["serve"]


def serve(spec: str | Path | None = None, overrides: tuple[str, ...] = (), *, host: str = "127.0.0.1", port: int = 8000,
          data_dir: str | Path = ".", runs_dir: str | Path = "runs", max_sessions: int = 2, max_upload_mb: float = 10.0,
          idle_timeout: float = 1800.0, open_browser: bool = False) -> None:
    """Run the playground server until interrupted.

    Args:
        spec: a YAML spec the pages start from (default: a small net on moons, see scenes.PLAYGROUND).
        overrides: ``key=value`` on top of it.
        host: the address to bind; anything but 127.0.0.1/localhost exposes the server (a warning says so).
        port: the TCP port.
        data_dir: the only folder data files are read from (uploads aside).
        runs_dir: where "Save run" writes run folders.
        max_sessions: concurrent sessions (each trains); more pages get a "busy" message.
        max_upload_mb: the largest upload accepted.
        idle_timeout: seconds without an action after which a session is freed.
        open_browser: open the page in the default browser.

    Raises:
        ConfigError: the serve extra is missing, or a bad spec / data folder.
    """
    try:
        import uvicorn
    except ImportError:
        raise missing_extra("uvicorn", "serve", "deepwell serve") from None
    from deepwell.errors import ConfigError
    from deepwell.serve.app import Playground, create_app
    from deepwell.serve.scenes import playground_spec

    if not Path(data_dir).is_dir():
        raise ConfigError(f"--data-dir '{data_dir}' is not a folder; give the folder holding your CSV/NPZ files.")
    os.environ.setdefault("DEEPWELL_THREADS", "1")  # small nets are overhead-bound: one thread per session, not all cores each
    playground = Playground(playground_spec(str(spec) if spec else None, tuple(overrides)), Path(data_dir), Path(runs_dir),
                            max_sessions, int(max_upload_mb * 2**20), idle_timeout)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {host}: anyone who can reach this address can use the playground and the files under "
              f"{playground.data_dir}. Use the default 127.0.0.1 unless you mean it.", file=sys.stderr)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    print(f"deepwell playground: {url}  (Ctrl+C stops it)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        uvicorn.run(create_app(playground), host=host, port=port, log_level="warning")
    finally:
        playground.shutdown()  # also when the server never started (port taken): the temporary folder goes
