"""Finished answers by request, and the requests being answered now.

An answer is kept, as its JSON bytes, under its request's canonical key
(``_model/policy.py``), bounded in bytes (``_cache.py``). A request that
arrives while the same request is being answered joins it rather than
calculating again. The calculation belongs to no single request: it runs
until its last waiter leaves (answered, past its own deadline, or gone),
and its deadline is the latest of theirs, so a joiner with more time
lets it finish. When nobody waits any more it is stopped.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from policyengine_backend._cache import BytesCache
from policyengine_backend._logs import note, tracer
from policyengine_backend._worker.supervisor import Deadline


@dataclass
class _InFlight:
    task: asyncio.Task
    deadline: Deadline
    waiters: int = 0
    stop: Callable[[], None] = field(default=lambda: None)


class Answers:
    def __init__(self, max_bytes: int):
        self.cache = BytesCache(max_bytes)
        self._in_flight: dict[str, _InFlight] = {}

    async def answer(
        self,
        key: str,
        calculate: Callable[[Deadline], Awaitable[bytes]],
        deadline: Deadline,
        label: str = "answer",
    ) -> bytes:
        """The answer under ``key``: cached, joined, or ``calculate``d (and
        cached if it succeeds). ``label`` names the answer's source on the
        request's log line. Raises what the calculation raised, or
        TimeoutError at this request's own deadline."""
        with tracer.start_as_current_span("answer cache lookup") as span:
            answer = self.cache.get(key)
            flight = self._in_flight.get(key)
            source = (
                "cached" if answer is not None else "joined" if flight else "calculated"
            )
            span.set_attribute("answer", source)
            note(**{label: source})
        if answer is not None:
            return answer
        if flight is None:
            flight = self._start(key, calculate, deadline)
        else:
            flight.deadline.extend(deadline)
        flight.waiters += 1
        try:
            async with asyncio.timeout(deadline.left()):
                return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()  # nobody waits: stop it
                # It takes a moment to stop; a request that comes meanwhile
                # starts afresh rather than join what is being cancelled.
                self._forget(key, flight.task)

    def _start(
        self,
        key: str,
        calculate: Callable[[Deadline], Awaitable[bytes]],
        deadline: Deadline,
    ) -> _InFlight:
        shared = Deadline(deadline.at, deadline.ceiling)

        async def run() -> bytes:
            try:
                answer = await calculate(shared)
                self.cache.put(key, answer)
                return answer
            finally:
                self._forget(key, asyncio.current_task())

        task = asyncio.get_running_loop().create_task(run())
        # Marked as seen: a failure nobody waited for is not "never retrieved".
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        flight = _InFlight(task, shared)
        self._in_flight[key] = flight
        return flight

    def _forget(self, key: str, task: asyncio.Task | None) -> None:
        """No more joining ``task`` (if it is still the one under ``key``)."""
        flight = self._in_flight.get(key)
        if flight is not None and flight.task is task:
            del self._in_flight[key]
