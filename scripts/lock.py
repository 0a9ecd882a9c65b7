"""Write the uv.lock that every rendered project ships, one per country and Python.

Each rendered project must install exactly the versions this template's tests
ran against, so its uv.lock is rendered with it, from
templates/locks/<country>-py<version>.lock. This script makes those files:
for each combination it renders the template with a placeholder name, runs
`uv lock` in the render (which starts from the stored lock, so only what the
pyproject asks for changes), and stores the result with the placeholder name
turned back into `{{ cookiecutter.repo_name }}`.

    python scripts/lock.py                          # follow pyproject.toml changes
    python scripts/lock.py --upgrade                # newest versions of everything
    python scripts/lock.py --upgrade-package NAME   # newest NAME (repeatable)
    python scripts/lock.py --check                  # fail if a stored lock is stale

Run the tests after any change (`make test`): they install from these locks.
"""

import argparse
import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
LOCKS = TEMPLATE / "templates" / "locks"
COUNTRIES = ("us", "uk")
PYTHON_VERSIONS = tuple(json.loads((TEMPLATE / "cookiecutter.json").read_text())["python_version"])
# The render's name while locking; it must appear nowhere else in a lock.
PLACEHOLDER = "lock-placeholder"
ROOT_NAME_LINE = f'name = "{PLACEHOLDER}"'
STORED_NAME_LINE = 'name = "{{ cookiecutter.repo_name }}"'
# Jinja syntax in a stored lock would be rendered (or break the render).
JINJA = re.compile(r"\{\{|\{%|\{#")


def lock_path(country: str, version: str) -> Path:
    return LOCKS / f"{country}-py{version}.lock"


def uv() -> str:
    """The uv next to this Python (requirements-dev.txt pins it), else PATH's."""
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        sys.exit("ERROR: uv is not installed. Run: make install")
    return found


def render(country: str, version: str, output_dir: Path) -> Path:
    return Path(
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            extra_context={
                "repo_name": PLACEHOLDER,
                "country": country,
                "python_version": version,
            },
            output_dir=str(output_dir),
            default_config=True,
        )
    )


def to_stored(lock: str) -> str:
    """The lock as stored in templates/locks: the project's name as Jinja."""
    if lock.count(PLACEHOLDER) != 1 or lock.count(ROOT_NAME_LINE) != 1:
        raise ValueError(f"expected {PLACEHOLDER!r} exactly once, as the root package's name")
    if JINJA.search(lock):
        raise ValueError("the lock contains Jinja syntax ({{, {% or {#); it cannot be stored as is")
    return lock.replace(ROOT_NAME_LINE, STORED_NAME_LINE)


def lock_one(country: str, version: str, uv_args: list[str], check: bool) -> bool:
    """Relock (or check) one combination; True when its stored lock is current."""
    stored = lock_path(country, version)
    if not stored.exists():
        if check:
            print(f"{stored.relative_to(TEMPLATE)}: missing", file=sys.stderr)
            return False
        # A first lock: render against an empty one and let uv start afresh.
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text("")
    with tempfile.TemporaryDirectory() as tmp:
        project = render(country, version, Path(tmp))
        lock_file = project / "uv.lock"
        if not lock_file.read_text().strip():
            lock_file.unlink()
        command = [uv(), "lock", *(["--check", "--offline"] if check else uv_args)]
        print(f"{country}, Python {version}: {' '.join(command[1:])}", flush=True)
        result = subprocess.run(command, cwd=project, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stdout + result.stderr, file=sys.stderr)
            if not check:
                raise SystemExit(f"ERROR: uv lock failed for {country}, Python {version}")
            return False
        if not check:
            stored.write_text(to_stored(lock_file.read_text()))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--upgrade", action="store_true", help="newest versions of everything")
    group.add_argument(
        "--upgrade-package", action="append", default=[], metavar="NAME", help="newest NAME"
    )
    group.add_argument("--check", action="store_true", help="fail if a stored lock is stale")
    args = parser.parse_args(argv)
    uv_args = ["--upgrade"] if args.upgrade else []
    for name in args.upgrade_package:
        uv_args += ["--upgrade-package", name]

    stale = [
        f"{country}-py{version}"
        for country, version in itertools.product(COUNTRIES, PYTHON_VERSIONS)
        if not lock_one(country, version, uv_args, args.check)
    ]
    if stale:
        print(f"ERROR: stale locks: {', '.join(stale)}. Run: make lock", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
