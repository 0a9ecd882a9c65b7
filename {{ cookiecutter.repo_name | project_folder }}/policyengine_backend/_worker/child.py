"""What runs in the calculation worker, and only there.

The worker is a fork of the warm server. It never runs a worker function
itself: for each job it prepares what the job needs and keeps it for later
jobs (a policy's tax-benefit system, a year's parameters: seconds each to
make), then forks the job's own process from itself. The function runs
there, and that process ends with the job. So nothing a function does, to
the model's parameters, to a module's globals or to its process, outlives
its job: the next job starts from the worker as it was, and an answer is
cached only when it came from a process that started that way. A fork
shares every page until it is written, so this costs a job about what it
writes anyway (`make bench`).

The job's process says how it went in a ``Reply``: the answer as JSON
bytes, or the request's problem, or the function's bug. A result is checked
against the function's ``result_model`` and must be plain JSON (no NaN, no
numpy values): a function that breaks its own declaration is a bug, said as
one, never an answer a typed client would misread.

Whatever the job's process starts dies with it: it leads a process group of
its own, which the worker ends after the job, and every process forked in
it dies when its parent does (``PR_SET_PDEATHSIG``), as the worker does
when the server dies. The worker holds none of the server's sockets, so a
worker outliving a killed server could not keep its port either.
"""

import contextlib
import ctypes
import dataclasses
import gc
import json
import logging
import os
import pickle
import re
import signal
import stat
import sys
import time
import traceback
from typing import Any

from pydantic import TypeAdapter, ValidationError

from policyengine_backend._errors import PolicyFailed, Problem, field_error
from policyengine_backend._model.functions import (
    WORKER_FUNCTIONS,
    Simulations,
    WorkerFunction,
    locate,
)
from policyengine_backend._worker.messages import (
    Details,
    Ended,
    Job,
    Outcome,
    Ping,
    Pong,
    Ready,
    Reply,
    Started,
)

# The model's messages can be long; the client gets the start.
MESSAGE_LIMIT = 300
# What policyengine-core's Simulation.calculate says of a name it lacks.
UNKNOWN_VARIABLE = re.compile(r"Variable (\S+) does not exist\.")
PR_SET_PDEATHSIG = 1

logger = logging.getLogger(__name__)


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent (``parent``, the
    pid it had before the fork) dies, on Linux; if it died already, exit.
    Elsewhere (macOS) a worker notices at its next message instead."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _forked_dies_with_parent() -> None:
    """Make every process forked from this one die with its parent too."""
    forking: list[int] = []
    os.register_at_fork(
        before=lambda: forking.append(os.getpid()),
        after_in_parent=forking.clear,
        after_in_child=lambda: die_with_parent(forking.pop()),
    )


def let_go_of_sockets(keep: int) -> None:
    """Point every socket this process inherited, except ``keep`` (its pipe
    to the server), at /dev/null.

    A fork inherits the server's listening socket and its clients'
    connections: held here, a connection the server closed stays half-open
    (its client waits for an answer that never comes), and after the server
    dies the port stays taken. Replaced rather than closed, so no number is
    reused under an object that still thinks it owns it.
    """
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd in (keep, null):
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.dup2(null, fd, inheritable=False)
    except FileNotFoundError:  # no /proc (macOS): nothing to find them by
        pass
    finally:
        os.close(null)


def fresh_streams() -> None:
    """Give this process, just forked from the server, a ``sys.stdout`` and
    ``sys.stderr`` of its own.

    A stream's buffer has a lock, held while a line is written (the system
    call included), and a fork copies the lock as it is. If another of the
    server's threads was writing a log line at that moment, the copy is held
    by a thread that does not exist here, and the first line this process
    wrote would wait for ever: a calculation that never answers. New stream
    objects on the same files have locks of their own. Log handlers that
    held the old streams are pointed at the new ones (not with
    ``setStream``, which would flush the old one, and wait).
    """
    handlers = [
        handler
        for logger in [logging.root, *logging.Logger.manager.loggerDict.values()]
        for handler in getattr(logger, "handlers", ())
        if isinstance(handler, logging.StreamHandler)
    ]
    for name in ("stdout", "stderr"):
        old = getattr(sys, name)
        try:
            fd = old.fileno()
        except (AttributeError, OSError, ValueError):
            continue  # not a file (output captured in memory): nothing to copy
        new = open(  # noqa: SIM115 - it is the process's stream from now on
            fd,
            "w",
            buffering=1,
            encoding=getattr(old, "encoding", None) or "utf-8",
            errors="backslashreplace",
            closefd=False,
        )
        setattr(sys, name, new)
        for handler in handlers:
            if handler.stream is old:
                handler.stream = new


def serve(
    connection, server: int, systems: Any, settings: Any, warmed_years: tuple
) -> None:
    """The worker's loop: prepare each job, run it in a process of its own,
    pass its reply on. ``server`` is the server's pid."""
    die_with_parent(server)
    fresh_streams()
    let_go_of_sockets(keep=connection.fileno())
    # Ctrl-C in `make dev` reaches the whole process group: stop at once
    # rather than run the server's handlers copied into this process.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    warmed = set(warmed_years)
    connection.send(Ready())
    while True:
        try:
            message = connection.recv()
        except EOFError:  # the server has gone
            return
        if isinstance(message, Ping):
            connection.send(Pong())
            continue
        job: Job = message
        reply = prepare(systems, job, warmed)
        if reply is None:
            reply = run_in_own_process(systems, settings, job, connection)
        connection.send(reply)
        del job, reply
        # What preparing left behind (a policy build's garbage); the model
        # itself is frozen out of collections (Engine.warm_up).
        gc.collect()
        connection.send(Ready())


def prepare(systems: Any, job: Job, warmed: set) -> Reply | None:
    """Build the job's policies and warm its years, here, where they are
    kept; a Reply if a policy cannot be built."""
    from policyengine_backend._model.household import warm_year

    for year in job.years:
        if year not in warmed:
            warm_year(systems, year)
            warmed.add(year)
    for policy in job.policies:
        try:
            systems.path_for(policy)
        except Exception as error:  # noqa: BLE001 - policyengine's own build refuses it
            return policy_failed(job, f"{type(error).__name__}: {error}")
    return None


def policy_failed(job: Job, reason: str) -> Reply:
    message = f"policyengine cannot apply this policy: {short(reason)}"
    return Reply(
        job.id,
        Outcome.POLICY_FAILED,
        status=Problem.status,
        errors=[field_error(("policy",), message)],
    )


def run_in_own_process(systems: Any, settings: Any, job: Job, connection) -> Any:
    """Fork a process for the job, say so, and read its reply; ``Ended`` if
    it died without one."""
    read_end, write_end = os.pipe()
    worker = os.getpid()
    pid = os.fork()
    if pid == 0:  # the job's process
        try:
            os.close(read_end)
            os.setpgid(0, 0)
            die_with_parent(worker)
            _forked_dies_with_parent()
            collect_less_often()
            reply = run_job(systems, settings, job)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(pickle.dumps(reply))
        finally:
            os._exit(0)
    os.close(write_end)
    connection.send(Started(job.id, pid))
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status, usage = os.wait4(pid, 0)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # whatever it started
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and data:
        with contextlib.suppress(Exception):
            reply = pickle.loads(data)
            used = dataclasses.replace(
                reply.details,
                cpu_ms=round((usage.ru_utime + usage.ru_stime) * 1000, 1),
                system_ms=round(usage.ru_stime * 1000, 1),
                minor_faults=usage.ru_minflt,
            )
            return dataclasses.replace(reply, details=used)
    exitcode = (
        -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    )
    return Ended(job.id, exitcode)


def collect_less_often() -> None:
    """Make this job's full garbage collections ten times rarer.

    Python runs a full collection when the objects that reached the oldest
    generation since the last one outnumber a quarter of those that survived
    it. The worker's last full collection (after each job) found little
    besides what it prepared, the model being frozen out of collections
    (``Engine.warm_up``), so a job would run one at every tenth younger
    collection, each walking every object the calculation keeps: a tenth
    of a 200-household batch's time. Younger collections run as before, so
    short-lived cycles are freed as soon as ever, and everything goes when
    the job's process ends.
    """
    young, middle, oldest = gc.get_threshold()
    gc.set_threshold(young, middle, oldest * 10)


def run_job(systems: Any, settings: Any, job: Job) -> Reply:
    """Run the job's worker function; its reply, whatever happens."""
    function = WORKER_FUNCTIONS[job.function]
    simulations = Simulations(
        systems, lambda situation: size_errors(situation, settings)
    )
    started = time.time_ns()
    try:
        request = function.request_model.model_validate(job.body)
        result = function.function(request, simulations)
        answer = encode(function, result)
    except PolicyFailed as error:
        return policy_failed(job, str(error))
    except Problem as error:
        return Reply(job.id, Outcome.PROBLEM, status=error.status, errors=error.errors)
    except _Broken as error:
        return Reply(job.id, Outcome.BUG, message=f"{function.route}: {error}")
    except Exception as error:
        if (problem := model_problem(error, job.body)) is not None:
            return Reply(job.id, Outcome.PROBLEM, status=Problem.status, errors=problem)
        logger.exception("%s failed", function.route, extra={"route": function.route})
        return Reply(job.id, Outcome.BUG, message=bug_message(function, error))
    stages = dict(simulations.stages)
    built = stages.get("build simulation", (started, started))[1]
    stages["calculate values"] = (built, time.time_ns())
    details = Details(simulations.policy_path, stages, simulations.axis_points)
    return Reply(job.id, Outcome.OK, answer=answer, details=details)


def size_errors(situation: dict, settings: Any) -> list[dict]:
    """A situation a function builds counts toward the request limits, as
    the request's own household does; over one, the request as a whole is
    refused (the function built it)."""
    from policyengine_backend._engine.checks import check_limits

    return [
        field_error((), f"a simulation this endpoint built: {error['msg']}")
        for error in check_limits(situation, None, settings, at=())
    ]


# --- Results ------------------------------------------------------------------


class _Broken(Exception):
    """A result that breaks the function's declaration."""


def encode(function: WorkerFunction, result: Any) -> bytes:
    """The answer's JSON body; _Broken if the result is not plain JSON or
    does not match the function's ``result_model``."""
    try:
        json.dumps(result, allow_nan=False, default=_refuse)
    except (ValueError, TypeError):
        raise _Broken(not_json(result)) from None
    adapter = TypeAdapter(function.result_model)
    try:
        valid = adapter.validate_python(result)
    except ValidationError as error:
        first = error.errors()[0]
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}"
            for part in first["loc"]
        )
        raise _Broken(
            f"the result does not match its result_model at result{where}: {first['msg']}"
        ) from None
    body = {
        "status": "ok",
        "message": None,
        "result": adapter.dump_python(valid, mode="json"),
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def _refuse(value: Any) -> Any:
    raise TypeError


def not_json(result: Any) -> str:
    """Where a result holds what JSON cannot carry, and what to do."""

    def find(node: Any, where: str) -> str | None:
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    return f"a {type(key).__name__} key at {where}"
                if found := find(child, f"{where}.{key}"):
                    return found
            return None
        if isinstance(node, (list, tuple)):
            for index, child in enumerate(node):
                if found := find(child, f"{where}[{index}]"):
                    return found
            return None
        if type(node).__module__ == "numpy":
            return f"a numpy {type(node).__name__} at {where}"
        if isinstance(node, float) and (
            node != node or node in (float("inf"), float("-inf"))
        ):
            return f"{node} at {where}"
        if node is None or isinstance(node, (str, int, float, bool)):
            return None
        return f"a {type(node).__name__} at {where}"

    found = find(result, "result") or "a value JSON cannot carry"
    return (
        f"the result holds {found}; return plain Python values "
        "(float(), .tolist()) and no NaN or infinity"
    )


# --- Errors from the model ------------------------------------------------------


def model_problem(error: Exception, body: dict) -> list[dict] | None:
    """The field errors for an error policyengine raised while a function
    ran, at the request field that named what it refused when that can be
    told (an unknown variable, a year it has no parameters for), else for
    the request as a whole. None for an error raised outside policyengine:
    that is the function's bug."""
    from policyengine_core.errors import ParameterNotFoundError, SituationParsingError

    if isinstance(error, SituationParsingError):
        return list(
            parsing_errors(error.error, ("household",) if "household" in body else ())
        )
    if not raised_by_the_model(error):
        return None
    candidates: list[tuple] = []
    if name := unknown_variable(error):
        candidates = locate(body, name)
        message = f"unknown variable {name!r}"
    elif isinstance(error, ParameterNotFoundError):
        year = error.instant_str[:4]
        candidates = locate(body, int(year)) + locate(body, year)
        message = f"the model has no parameters for {error.instant_str} ({error.name})"
    else:
        message = f"the model could not calculate this: {short(f'{type(error).__name__}: {error}')}"
    where = candidates[0] if len(candidates) == 1 else ()
    return [field_error(where, message)]


def unknown_variable(error: Exception) -> str | None:
    """The variable an error says the model does not have, if it says so."""
    from policyengine_core.errors import VariableNotFoundError

    if isinstance(error, VariableNotFoundError):
        return error.variable_name
    found = (
        UNKNOWN_VARIABLE.match(str(error)) if isinstance(error, ValueError) else None
    )
    return found[1] if found else None


def raised_by_the_model(error: Exception) -> bool:
    """Whether the error came from policyengine's own code."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and f"{os.sep}policyengine_" in frames[-1].filename


def bug_message(function: WorkerFunction, error: Exception) -> str:
    """Where a function failed: its route, the error's type and the last
    line of this project's code it passed; never the error's text, which
    may hold what the request sent (the log has the whole traceback)."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [
        frame
        for frame in frames
        if f"{os.sep}site-packages{os.sep}" not in frame.filename
    ]
    place = ""
    if ours:
        frame = ours[-1]
        place = f" at {os.path.relpath(frame.filename)}:{frame.lineno}"
    return f"{function.route} failed: {type(error).__name__}{place}; the log has the traceback"


def short(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "no reason given"
    return first if len(first) <= MESSAGE_LIMIT else first[: MESSAGE_LIMIT - 3] + "..."


def parsing_errors(tree: Any, location: tuple):
    """Flatten policyengine's nested {path: {...: message}} error."""
    if not isinstance(tree, dict):
        yield field_error(location, short(str(tree)))
        return
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from parsing_errors(value, (*location, key))
        else:
            yield field_error((*location, key), short(str(value)))
