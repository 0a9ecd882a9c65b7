"""The thread workers are forked from, with room for the model's deep calls.

CPython keeps a thread's Python frames in chunks of memory, 16 KiB each
unless one frame needs more. When a call does not fit in the current chunk,
a new chunk is mapped; as soon as that call returns, the chunk is unmapped.
Only the thread's first chunk is kept for good. policyengine's formulas call
one another hundreds of calls deep, and a calculation that keeps crossing a
chunk's end maps and unmaps a chunk, and faults its pages in again, on every
such call. For 200 households across 51 states that happened 225,000 times
(``strace -f -e trace=mmap,munmap``) and took a fifth of the job's time.
Whether a job is hit depends only on how deep in the stack it starts.

A thread's first chunk is sized for its first frame. This thread's first
frame is a function whose value stack is made a megabyte deep (and never
used), so the thread keeps a 2 MiB first chunk: about a megabyte of frames,
thousands of calls, fit before any chunk is mapped. A fork copies only the
forking thread, so a worker forked from here runs in its copy, and so does
every job the worker forks: their calculations map no chunks.
"""

import _thread
import queue
import types
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

# Pointer-sized slots of the first frame's (unused) value stack: 1 MiB and
# a little, so the first chunk is the next power of two, 2 MiB, with a
# megabyte free above the frame. Untouched pages of it cost no memory.
ROOM = (1 << 20) // 8 + 1024

_Task = tuple[Callable[..., Any], tuple, Future] | None


def _serve(tasks: "queue.SimpleQueue[_Task]") -> None:
    while (task := tasks.get()) is not None:
        function, args, future = task
        try:
            future.set_result(function(*args))
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            future.set_exception(error)


# _serve with its frame made large: the thread's first frame.
_first_frame = types.FunctionType(
    _serve.__code__.replace(co_stacksize=_serve.__code__.co_stacksize + ROOM),
    _serve.__globals__,
    _serve.__name__,
)


class DeepStackThread:
    """One thread that runs what it is given, in turn, until shut down.

    Started with ``_thread`` rather than ``threading``: a ``threading.Thread``
    enters Python through its own small ``_bootstrap`` frame, which would
    size the first chunk instead.
    """

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[_Task] = queue.SimpleQueue()
        _thread.start_new_thread(_first_frame, (self._tasks,))

    def submit(self, function: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        self._tasks.put((function, args, future))
        return future

    def shutdown(self) -> None:
        """End the thread once what it was given is done."""
        self._tasks.put(None)
