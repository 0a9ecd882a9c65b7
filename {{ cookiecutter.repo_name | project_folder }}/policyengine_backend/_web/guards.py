"""Guards against the two ways a route can stall the whole server.

A server process answers every request on one event loop. Model work in a
route (a ``Simulation`` built there, however its package was imported) runs
in the server, past every deadline and memory limit; blocking code in an
``async def`` route (``time.sleep``, heavy numpy, a file read) holds the
loop. Either way ``/health`` and every other request wait behind it.

- ``refuse_simulations_in_the_server``: once the server is warm, a
  ``Simulation`` built while it answers a request is refused: a 500 naming
  the route and pointing to ``worker_endpoint``, wherever it happens. The
  worker's processes (forks, with other pids) build them as usual.
- ``LoopWatch``: a thread that asks the loop to run a no-op every so often;
  if the loop does not get to it within ``LOOP_STALL_WARNING_SECONDS``, it
  logs a WARNING naming the request that held it. `make lint` refuses the
  common blocking calls in ``async def`` (ruff's ASYNC rules); this catches
  the rest at run time.
"""

import asyncio
import functools
import logging
import os
import threading
import time

from policyengine_backend._errors import Bug
from policyengine_backend._logs import ROUTE, current_route

logger = logging.getLogger(__name__)


def refuse_simulations_in_the_server() -> None:
    """From now on, a Simulation built in this process while it answers a
    request raises ``Bug``. Idempotent."""
    from policyengine_core.simulations import Simulation

    server = os.getpid()
    # Every class that builds itself is guarded, not only policyengine-core's:
    # a country's Simulation may never call core's __init__ (policyengine-uk's
    # does not). The country package may still be loading (warm-up runs in
    # the background), so classes defined later are guarded as they are.
    for cls in _with_subclasses(Simulation):
        _guard(cls, server)
    if "__init_subclass__" not in vars(Simulation):

        def guard_new_subclass(cls: type, **kwargs) -> None:
            super(Simulation, cls).__init_subclass__(**kwargs)
            _guard(cls, server)

        Simulation.__init_subclass__ = classmethod(guard_new_subclass)  # type: ignore[assignment]


def _with_subclasses(cls: type) -> list[type]:
    found = [cls]
    subclasses: list[type] = type.__subclasses__(cls)
    for subclass in subclasses:
        found += _with_subclasses(subclass)
    return found


def _guard(cls: type, server: int) -> None:
    build = vars(cls).get("__init__")
    if build is None or getattr(build, "_refused_in", None) is not None:
        return

    # Wrapped, so inspect.signature sees the original's parameters
    # (policyengine-us binds arguments to it by name).
    @functools.wraps(build)
    def __init__(self, *args, **kwargs):
        route = current_route()
        if route is not None and os.getpid() == server:
            raise Bug(
                f"{route} built a policyengine Simulation in the server process, "
                "where it would run past every deadline and memory limit and stall "
                "every other request: do model work in a worker function "
                "(policyengine_backend.worker_endpoint; README, 'Add your own endpoint')"
            )
        build(self, *args, **kwargs)

    __init__._refused_in = server  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]


class LoopWatch:
    """Logs a WARNING when the event loop is held longer than ``threshold``
    seconds, naming the request whose code held it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float):
        self.loop = loop
        self.threshold = threshold
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="loop-watch", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(self.threshold / 2):
            answered = threading.Event()
            sent = time.monotonic()
            try:
                self.loop.call_soon_threadsafe(self._answer, answered)
            except RuntimeError:  # the loop has closed
                return
            if answered.wait(self.threshold):
                continue
            route = self._holding_route()
            while not answered.wait(0.1) and not self._stopped.is_set():
                pass
            held = time.monotonic() - sent
            if route is None:
                # No request's code held it: the process was short of CPU, or
                # another thread (warm-up's import) kept the GIL. Not a bug.
                logger.info(
                    "the event loop waited %.1f s with no request's code running",
                    held,
                    extra={"loop_held_seconds": round(held, 1)},
                )
                continue
            logger.warning(
                "the event loop was held for %.1f s by %s: blocking code in an async "
                "def route stalls every request (make it a def route, or use "
                "asyncio.to_thread; README, 'Add your own endpoint')",
                held,
                route,
                extra={"loop_held_seconds": round(held, 1), "route": route},
            )

    def _answer(self, answered: threading.Event) -> None:
        answered.set()

    def _holding_route(self) -> str | None:
        """The request whose code the loop is running now: the running
        task's own context says. (Not read from the loop thread's frames:
        reading a running frame's locals from another thread can crash.)"""
        task = asyncio.current_task(self.loop)
        return None if task is None else task.get_context().get(ROUTE)
