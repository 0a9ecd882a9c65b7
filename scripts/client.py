"""Write templates/client/<country>/, the generated client files every rendered project ships.

A rendered project's client/openapi.json and client/schema.d.ts are what its
own `make client` writes from its app, so that a fresh render's `make client`
changes nothing. They differ by country (household groups, examples) and,
in openapi.json, by the project's name and description (the schema's info).
For each country this script renders the template with placeholder answers,
runs `make client` in the render, and stores both files with the
placeholders turned into Jinja; the render's client/ files include them.

    python scripts/client.py            # write them
    python scripts/client.py --check    # fail if one is stale

Run it (`make client`) after changing an endpoint, a request or answer
model, or the locks; the template's tests fail until then.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
STORED = TEMPLATE / "templates" / "client"
COUNTRIES = ("us", "uk")
PYTHON_VERSION = json.loads((TEMPLATE / "cookiecutter.json").read_text())["python_version"][0]
FILES = ("openapi.json", "schema.d.ts")
# The render's answers; each must appear in openapi.json once, as its own
# JSON string, and nowhere in schema.d.ts.
PLACEHOLDERS = {
    "project_name": "Client Placeholder Title",
    "description": "Client placeholder description.",
}
# Jinja syntax in a stored file would be rendered (or break the render).
JINJA = re.compile(r"\{\{|\{%|\{#")


def shared_venv(country: str) -> Path:
    """The template tests' venv for this country (tests/conftest.py)."""
    return TEMPLATE / ".cache" / f"venv-{country}-py{PYTHON_VERSION}"


def to_stored(name: str, text: str) -> str:
    """A generated file as stored: the placeholders as Jinja. The project's
    `make client` writes JSON strings with json.dumps (ASCII only), which is
    what cookiecutter's jsonify filter writes too."""
    if JINJA.search(text):
        raise ValueError(f"{name} contains Jinja syntax ({{{{, {{% or {{#}})")
    for answer, placeholder in PLACEHOLDERS.items():
        quoted = json.dumps(placeholder)
        expected = 1 if name == "openapi.json" else 0
        if text.count(placeholder) != expected or text.count(quoted) != expected:
            raise ValueError(f"{name}: expected {quoted} {expected} time(s)")
        text = text.replace(quoted, f"{{{{ cookiecutter.{answer} | jsonify }}}}")
    return text


def generate(country: str, output_dir: Path) -> dict[str, str]:
    """The stored files of one country, from a render's `make client`."""
    for name in FILES:  # a first run: the render includes empty files
        path = STORED / country / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
    project = Path(
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            extra_context={**PLACEHOLDERS, "country": country, "python_version": PYTHON_VERSION},
            output_dir=str(output_dir),
            default_config=True,
        )
    )
    print(f"{country}: make client", flush=True)
    done = subprocess.run(
        ["make", "client", f"VENV={shared_venv(country)}"],
        cwd=project,
        env={**os.environ, "MAKEFLAGS": ""},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"ERROR: make client failed for {country}:\n{done.stdout}{done.stderr}")
    return {name: to_stored(name, (project / "client" / name).read_text()) for name in FILES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a stored file is stale")
    args = parser.parse_args(argv)
    stale = []
    for country in COUNTRIES:
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in generate(country, Path(tmp)).items():
                path = STORED / country / name
                if path.read_text() != text:
                    stale.append(str(path.relative_to(TEMPLATE)))
                    if not args.check:
                        path.write_text(text)
    if args.check and stale:
        print(f"ERROR: stale: {', '.join(stale)}. Run: make client", file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
