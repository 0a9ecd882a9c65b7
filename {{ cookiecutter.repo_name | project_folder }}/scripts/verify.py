"""Check a deployed backend: health endpoints, then a sample calculation.

Used by `make health`, `make verify` (after every deploy) and the scheduled
health workflow. Standard library only, so it runs before any install.
Exits non-zero, saying what failed, unless every check passes.
"""

import argparse
import json
import runpy
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

EXAMPLES = runpy.run_path(str(Path(__file__).parents[1] / "api" / "examples.py"))
# A new deployment may still be starting (503) or warming up: keep asking.
RETRY_STATUSES = {502, 503, 504}


class CheckFailed(Exception):
    pass


def request(url: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"null")
        except json.JSONDecodeError:
            return error.code, {}


def check(name: str, url: str, expect, wait: float, body: dict | None = None) -> None:
    """Ask ``url`` until it answers 200 with a body ``expect`` accepts."""
    deadline = time.monotonic() + wait
    while True:
        try:
            status, payload = request(url, body)
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as error:
            status, payload = None, {"error": str(error)}
        if status == 200 and expect(payload):
            print(f"ok    {name}: {url}")
            return
        if (status is None or status in RETRY_STATUSES) and time.monotonic() < deadline:
            time.sleep(3)
            continue
        raise CheckFailed(f"{name}: {url} answered {status} {json.dumps(payload)[:300]}")


def has_no_nulls(value) -> bool:
    if isinstance(value, dict):
        return all(has_no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(has_no_nulls(v) for v in value)
    return value is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--health-url", required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--health-only", action="store_true")
    parser.add_argument("--wait", type=float, default=240, help="seconds to wait for a cold start")
    args = parser.parse_args(argv)
    api = args.api_url.rstrip("/")
    is_ok = lambda payload: isinstance(payload, dict) and payload.get("status") == "ok"  # noqa: E731
    try:
        check("health function", args.health_url, is_ok, args.wait)
        check("API health", f"{api}/health", is_ok, args.wait)
        if not args.health_only:
            check(
                "sample calculation",
                f"{api}/calculate",
                lambda payload: is_ok(payload) and has_no_nulls(payload.get("result")),
                args.wait,
                body={"household": EXAMPLES["EXAMPLE_HOUSEHOLD"]},
            )
    except CheckFailed as failure:
        print(f"FAILED {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
