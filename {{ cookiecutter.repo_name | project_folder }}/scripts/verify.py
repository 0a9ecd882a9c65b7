"""Check a deployed backend: health endpoints, then a sample calculation.

Used by `make health`, `make verify` (after every deploy) and the scheduled
health workflow. Standard library only, so it runs before any install.
Exits non-zero, saying what failed, unless every check passes:

- the standalone health function answers 200 ``{"status": "ok"}``;
- the API's ``/health`` answers 200 ``{"status": "ok", ...}``;
- unless ``--health-only``, ``POST /calculate`` with the example household
  answers 200 ``{"status": "ok", "result": {...}}`` with every null filled.

Only what can heal while a new deployment starts is retried, until
``--wait`` seconds have passed, and each retry says why: a refused or reset
connection, a request timing out, 502/503/504 (starting, or warming up),
429 (busy), and a 404 in the first ``NOT_FOUND_WAIT`` seconds (a new URL
can take a moment to appear). Anything else fails at once with its cause:
a host name that does not resolve, a TLS error, another 4xx, a 500, or a
wrong body.
"""

# Type hints as text: the Makefile runs this with the system's python3,
# which can be older than the project's Python (3.9 on macOS).
from __future__ import annotations

import argparse
import http.client
import json
import runpy
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

EXAMPLES_FILE = (
    Path(__file__).resolve().parents[1] / "policyengine_backend" / "examples.py"
)
# A new deployment may still be starting (503) or warming up, or busy
# (429): keep asking.
RETRY_STATUSES = {429, 502, 503, 504}
# A 404 is retried only this long: right after a deploy the URL may not
# answer yet, but an app that is not deployed at all answers 404 for good.
NOT_FOUND_WAIT = 60
HINTS = {
    404: "is the app stopped, or not deployed to this environment? make deploy ENV=...",
    500: "the app failed: look at make logs ENV=...",
}


class CheckFailed(Exception):
    pass


class NoAnswer(Exception):
    """The request got no HTTP answer; says why and whether to retry."""

    def __init__(self, reason: str, can_heal: bool):
        super().__init__(reason)
        self.can_heal = can_heal


def request(url: str, body: dict | None, timeout: float) -> tuple[int, object]:
    """(HTTP status, parsed JSON body, or the raw text when it is not JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (OSError, http.client.HTTPException) as error:
        raise no_answer(error, timeout) from None
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def no_answer(error: Exception, timeout: float) -> NoAnswer:
    """Why a request got no answer, and whether that can heal by itself."""
    # urllib wraps errors while connecting in URLError(reason=<the cause>).
    cause = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(cause, socket.gaierror):
        detail = f" ({cause.strerror})" if cause.strerror else ""
        return NoAnswer(
            f"the host name does not resolve{detail}; is the URL right?", False
        )
    if isinstance(cause, ssl.SSLError):  # certificate or handshake
        return NoAnswer(f"TLS error: {cause}", False)
    if isinstance(cause, ConnectionRefusedError):
        return NoAnswer("connection refused", True)
    if isinstance(cause, ConnectionResetError):  # RemoteDisconnected too
        return NoAnswer("connection closed without an answer", True)
    if isinstance(cause, TimeoutError):
        return NoAnswer(f"no answer within {timeout:g} s (--timeout)", True)
    return NoAnswer(str(cause) or type(cause).__name__, False)


def describe(status: int, payload) -> str:
    shown = payload if isinstance(payload, str) else json.dumps(payload)
    return f"answered {status}: {shown[:300]}"


def check(
    name: str,
    url: str,
    expect,
    wait: float,
    interval: float,
    timeout: float,
    body: dict | None = None,
) -> None:
    """Ask ``url`` until it answers 200 with a body ``expect`` accepts."""
    started = time.monotonic()
    deadline = started + wait
    while True:
        try:
            status, payload = request(url, body, timeout)
        except NoAnswer as error:
            reason, can_heal = f"no answer: {error}", error.can_heal
        else:
            if status == 200 and expect(payload):
                print(f"ok     {name}: {url}")
                return
            reason = describe(status, payload)
            if status in HINTS:
                reason += f"\n       ({HINTS[status]})"
            can_heal = status in RETRY_STATUSES or (
                status == 404 and time.monotonic() - started < NOT_FOUND_WAIT
            )
        remaining = deadline - time.monotonic()
        if can_heal and remaining > 0:
            print(
                f"...    {name}: {reason.splitlines()[0]}; "
                f"retrying ({remaining:.0f} s left)",
                file=sys.stderr,
            )
            time.sleep(min(interval, remaining))
            continue
        raise CheckFailed(f"{name}: {url} {reason}")


def is_ok(payload) -> bool:
    return isinstance(payload, dict) and payload.get("status") == "ok"


def has_no_nulls(value) -> bool:
    if isinstance(value, dict):
        return all(has_no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(has_no_nulls(v) for v in value)
    return value is not None


def is_filled_result(payload) -> bool:
    result = payload.get("result") if isinstance(payload, dict) else None
    return (
        is_ok(payload)
        and isinstance(result, dict)
        and bool(result)
        and has_no_nulls(result)
    )


def http_url(text: str) -> str:
    if urllib.parse.urlsplit(text).scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--health-url", required=True, type=http_url)
    parser.add_argument("--api-url", required=True, type=http_url)
    parser.add_argument("--health-only", action="store_true")
    parser.add_argument(
        "--wait",
        type=float,
        default=240,
        help="seconds to keep retrying a starting app",
    )
    parser.add_argument(
        "--interval", type=float, default=3, help="seconds between retries"
    )
    parser.add_argument(
        "--timeout", type=float, default=120, help="seconds for one request"
    )
    args = parser.parse_args(argv)
    api = args.api_url.rstrip("/")
    timing = {"wait": args.wait, "interval": args.interval, "timeout": args.timeout}
    try:
        check("health function", args.health_url, is_ok, **timing)
        check("API health", f"{api}/health", is_ok, **timing)
        if not args.health_only:
            examples = runpy.run_path(str(EXAMPLES_FILE))
            check(
                "sample calculation",
                f"{api}/calculate",
                is_filled_result,
                body={"household": examples["EXAMPLE_HOUSEHOLD"]},
                **timing,
            )
    except CheckFailed as failure:
        print(f"FAILED {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
