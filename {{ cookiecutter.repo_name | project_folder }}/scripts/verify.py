"""Check a deployed backend: health endpoints, then a sample calculation.

Used by `make health`, `make verify` (after every deploy) and the scheduled
health workflow. Standard library only, so it runs before any install.
Exits non-zero, saying what failed, unless every check passes:

- the standalone health function answers 200 ``{"status": "ok"}``;
- the API's ``/health`` answers 200 ``{"status": "ok", ...}``;
- unless ``--health-only``, ``POST /calculate`` with the example household
  answers 200 ``{"status": "ok", "result": {...}}`` with every null filled.

A new deployment may still be starting: 502/503/504 answers and network
errors are retried until ``--wait`` seconds have passed. Anything else
(404, 500, a wrong body) fails at once.
"""

import argparse
import http.client
import json
import runpy
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

EXAMPLES_FILE = Path(__file__).resolve().parents[1] / "api" / "examples.py"
# A new deployment may still be starting (503) or warming up: keep asking.
RETRY_STATUSES = {502, 503, 504}
HINTS = {
    404: "is the app stopped, or not deployed to this environment? make deploy ENV=...",
    500: "the app failed: look at make logs ENV=...",
}


class CheckFailed(Exception):
    pass


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
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


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
    deadline = time.monotonic() + wait
    while True:
        try:
            status, payload = request(url, body, timeout)
        except (OSError, http.client.HTTPException) as error:
            # URLError, timeouts, refused or reset connections.
            status, payload = None, f"no answer ({error})"
        if status == 200 and expect(payload):
            print(f"ok     {name}: {url}")
            return
        remaining = deadline - time.monotonic()
        if (status is None or status in RETRY_STATUSES) and remaining > 0:
            print(f"...    {name}: {status or 'no answer'}, retrying", file=sys.stderr)
            time.sleep(min(interval, remaining))
            continue
        shown = payload if isinstance(payload, str) else json.dumps(payload)
        message = f"{name}: {url} answered {status}: {shown[:300]}"
        if status in HINTS:
            message += f"\n       ({HINTS[status]})"
        raise CheckFailed(message)


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
