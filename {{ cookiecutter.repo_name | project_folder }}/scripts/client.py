"""Write client/ from the app's own OpenAPI schema (`make client`).

client/openapi.json is the schema as ``api.main.app.openapi()`` makes it:
offline, with no server and no country model (importing the app does not
load one). client/schema.d.ts is what openapi-typescript (pinned in
client/package-lock.json) makes of it: a TypeScript type for every path,
request and answer, which client/index.ts builds the typed client on.

    python scripts/client.py            write both files, if they changed
    python scripts/client.py --check    only say which are stale (exit 1)

tests/test_client.py fails when either file is stale, as a stale lock stops
a deploy: the frontend would be typed against an API that is not this one.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "client"
SCHEMA = CLIENT / "openapi.json"
TYPES = CLIENT / "schema.d.ts"
OPENAPI_TYPESCRIPT = CLIENT / "node_modules" / ".bin" / "openapi-typescript"
# A field with a default is optional in a request; in an answer the schema's
# own "required" says what the API always sends. openapi-typescript would
# otherwise make every field with a default required, requests included.
TYPES_OPTIONS = ["--default-non-nullable", "false"]
STALE = "{} is stale: run `make client` and commit client/"


class ClientError(Exception):
    """What is missing to write or check client/."""


def app_schema() -> dict:
    """The OpenAPI schema of the app as it is now."""
    sys.path.insert(0, str(ROOT))
    from api.main import app

    return app.openapi()


def schema_text(schema: dict) -> str:
    """client/openapi.json's text: ASCII only, so any name or description
    reads the same in every editor (and in a template that renders it)."""
    return json.dumps(schema, indent=2, ensure_ascii=True) + "\n"


def types_text(schema: str) -> str:
    """What openapi-typescript makes of the schema text."""
    if not OPENAPI_TYPESCRIPT.exists():
        raise ClientError(
            f"{OPENAPI_TYPESCRIPT.relative_to(ROOT)} is missing: "
            "`make client` installs it (npm ci in client/; needs Node 20 or later)"
        )
    with tempfile.TemporaryDirectory() as folder:
        source, output = Path(folder, "openapi.json"), Path(folder, "schema.d.ts")
        source.write_text(schema)
        done = subprocess.run(
            [str(OPENAPI_TYPESCRIPT), str(source), "-o", str(output), *TYPES_OPTIONS],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise ClientError(f"openapi-typescript failed:\n{done.stdout}{done.stderr}")
        return output.read_text()


def stale(with_types: bool = True) -> list[str]:
    """The files of client/ that do not match the app: each as a message."""
    schema = schema_text(app_schema())
    expected = {SCHEMA: schema}
    if with_types:
        expected[TYPES] = types_text(schema)
    return [
        STALE.format(path.relative_to(ROOT))
        for path, text in expected.items()
        if not path.exists() or path.read_text() != text
    ]


def write() -> list[Path]:
    """Write the files that changed; returns them."""
    schema = schema_text(app_schema())
    written = []
    for path, text in ((SCHEMA, schema), (TYPES, types_text(schema))):
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only say which files are stale"
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale()
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1 if problems else 0
        written = write()
    except ClientError as error:
        print(error, file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path.relative_to(ROOT)}")
    if not written:
        print("client/ is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
