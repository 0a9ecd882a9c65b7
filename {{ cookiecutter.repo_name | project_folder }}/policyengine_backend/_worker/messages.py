"""The messages between the server and its worker process.

They cross a pipe, pickled, so they are plain frozen dataclasses. The
server sends a ``Job`` (or a ``Ping``); the worker answers ``Started`` when
the job's own process runs, then its ``Reply``, or ``Ended`` if that process
died without one, then ``Ready`` for the next job.
"""

from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True)
class Job:
    """Run the worker function ``function`` on a checked request ``body``.

    ``policies`` and ``years`` are what the worker prepares first, in its
    own process, and keeps for later jobs: each policy's tax-benefit system
    and each year's parameters (a year the model has not prepared costs
    seconds).
    """

    id: int
    function: str
    body: dict
    route: str  # "POST /earnings-chart", for messages
    policies: tuple[dict, ...] = ()
    years: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ping:
    """Are you there? (``/health`` asks an idle worker.)"""


class Outcome(Enum):
    OK = "ok"  # ``answer`` is the JSON body
    PROBLEM = "problem"  # the request cannot be answered: ``status``, ``errors``
    POLICY_FAILED = "policy failed"  # a PROBLEM no request with this policy escapes
    BUG = "bug"  # the function's fault, said in ``message``


@dataclass(frozen=True)
class Details:
    """What a job did, for the request's log line and trace: how its
    policy's system was made, when each stage ran, the axis points of the
    simulations it built, and what its process used."""

    policy_path: str | None = None
    stages: dict[str, tuple[int, int]] = field(default_factory=dict)
    axis_points: int = 0
    # The job's own process (os.wait4): what forking per job costs shows in
    # its system time and minor page faults.
    cpu_ms: float = 0.0
    system_ms: float = 0.0
    minor_faults: int = 0


@dataclass(frozen=True)
class Reply:
    job: int
    outcome: Outcome
    answer: bytes = b""
    status: int = 200
    errors: list[dict] = field(default_factory=list)
    message: str = ""
    details: Details = field(default_factory=Details)


@dataclass(frozen=True)
class Ready:
    """Idle, and prepared for the next job."""


@dataclass(frozen=True)
class Pong:
    pass


@dataclass(frozen=True)
class Started:
    """The job runs in process ``pid`` (the server stops it by that pid)."""

    job: int
    pid: int


@dataclass(frozen=True)
class Ended:
    """The job's process ended without a reply: ``exitcode`` as
    multiprocessing says it (negative: killed by that signal)."""

    job: int
    exitcode: int
