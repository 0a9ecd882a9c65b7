"""``make dev``: serve the app locally; an edit under ``api/`` is served in seconds.

uvicorn's own ``--reload`` starts a new Python for every change, which
imports the country model and warms it up again: half a minute or more per
edit. Here one parent process loads and warms the model once, and the app
is served by a child forked from it (the same idea as the calculation
worker). The parent never imports ``api``; each child imports the app afresh.
When a file changes:

- under ``api/`` (this project's code): the child is stopped and a new one
  is forked from the warm parent, so the model is not loaded again;
- in ``policyengine_backend/``, ``pyproject.toml`` or ``uv.lock``: the
  parent has imported that code (or those packages), so everything starts
  again, as a first start does.

The parent opens the port before it warms up and keeps it open, so a
request sent while it warms up or reloads waits instead of being refused.
A child that stops on its own (an ``api/`` module that does not import,
say) is reported, and the next change starts a new one.
"""

import argparse
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from pathlib import Path

from policyengine_backend._web.app import get_engine
from policyengine_backend._worker.child import die_with_parent, fresh_streams

# Fork, not spawn: the point is to copy the warm parent.
FORK = multiprocessing.get_context("fork")
# Files whose change a new child picks up, and files that need a restart.
RELOAD = ("api",)
RESTART = ("policyengine_backend", "pyproject.toml", "uv.lock")
# How often the files are checked for a change (a stat of each file).
POLL_SECONDS = 0.25
# How long a stopping child may finish what it is answering.
STOP_SECONDS = 3

logger = logging.getLogger("policyengine_backend._dev")


def snapshot(paths: tuple[str, ...]) -> dict[Path, int]:
    """Each file's modification time, ``*.py`` only inside folders."""
    times: dict[Path, int] = {}
    for path in map(Path, paths):
        files = path.rglob("*.py") if path.is_dir() else [path]
        for file in files:
            with contextlib.suppress(FileNotFoundError):
                times[file] = file.stat().st_mtime_ns
    return times


def serve_app(app: str, listener: socket.socket, parent: int) -> None:
    """In a child: import the app (``module:name``) and serve it on
    ``listener``; die with the parent (``parent``, its pid), so a killed
    `make dev` leaves no app holding the port."""
    die_with_parent(parent)
    fresh_streams()
    import uvicorn

    config = uvicorn.Config(app, access_log=False, timeout_graceful_shutdown=1)
    uvicorn.Server(config).run(sockets=[listener])


def start_child(
    app: str, listener: socket.socket
) -> multiprocessing.process.BaseProcess:
    # Not a daemon: the app forks its own calculation worker.
    child = FORK.Process(
        target=serve_app, args=(app, listener, os.getpid()), name="app"
    )
    child.start()
    return child


def stop_child(child: multiprocessing.process.BaseProcess) -> None:
    """Stop the app as Ctrl-C would; kill it if it takes too long."""
    if child.is_alive():
        child.terminate()
        child.join(STOP_SECONDS)
    if child.is_alive():
        child.kill()
    child.join()


def wait_for_change(child: multiprocessing.process.BaseProcess) -> str:
    """Block until a watched file changes: ``"reload"`` or ``"restart"``."""
    reload_times, restart_times = snapshot(RELOAD), snapshot(RESTART)
    reported = False
    while True:
        time.sleep(POLL_SECONDS)
        if child.exitcode is not None and not reported:
            logger.warning(
                "the app stopped (exit code %s); fix the error above and save: "
                "the next change under api/ starts it again",
                child.exitcode,
            )
            reported = True
        if snapshot(RESTART) != restart_times:
            return "restart"
        if snapshot(RELOAD) != reload_times:
            return "reload"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", help="the app to serve, as module:name (api.main:app)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    listener = socket.create_server((args.host, args.port))
    engine = get_engine()
    logger.info(
        "http://%s:%d answers once the model is warm; requests sent before wait",
        args.host,
        args.port,
    )
    engine.warm_up()
    # Imported once here, so that a reload imports only api/.
    import uvicorn  # noqa: F401

    import policyengine_backend._web.app  # noqa: F401

    logger.info(
        "serving http://%s:%d/docs; an edit under api/ reloads without the model",
        args.host,
        args.port,
    )
    # `kill` stops it as Ctrl-C does: the app first, then this process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    restart = [
        sys.executable,
        "-m",
        "policyengine_backend._dev",
        *(argv or sys.argv[1:]),
    ]
    while True:
        child = start_child(args.app, listener)
        try:
            change = wait_for_change(child)
        finally:  # Ctrl-C (which reaches the app too) or kill
            stop_child(child)
        logger.info("%s: files changed", change)
        if change == "restart":
            listener.close()
            os.execv(sys.executable, restart)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
