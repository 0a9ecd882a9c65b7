"""client/, the frontend's typed client: generated from this app's schema,
current, and typed as the API really answers.

The first tests are plain Python and run in `make test`: client/openapi.json
is the app's schema as it is now (a route added under api/ without
`make client` fails here, as a stale lock stops a deploy), and real answers
match the schema the types come from. The tests marked ``client`` need Node
and client/node_modules; `make test-client` runs them (CI too): the
TypeScript types are openapi-typescript's output for that schema, and tsc
accepts a correct use of the client and refuses a wrong one, the example in
docs/deploy.md included.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema_rs  # schemathesis's JSON Schema validator
import pytest

from policyengine_backend.examples import (
    EXAMPLE_HOUSEHOLD,
    EXAMPLE_PARAMETER,
    EXAMPLE_POLICY,
    EXAMPLE_VARIABLE,
)
from policyengine_backend.testing import finished
from scripts import client as client_files

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"
TSC = CLIENT / "node_modules" / ".bin" / "tsc"


@pytest.fixture(scope="module")
def schema() -> dict:
    return client_files.app_schema()


def test_the_committed_schema_is_the_apps(schema):
    committed = client_files.SCHEMA.read_text()

    assert committed == client_files.schema_text(schema), client_files.STALE.format(
        "client/openapi.json"
    )


def test_every_endpoint_has_its_types(schema):
    """Each path and its request and answer bodies, by name, in schema.d.ts
    (which `make test-client` checks is generated from the schema)."""
    types = client_files.TYPES.read_text()
    for path, operations in schema["paths"].items():
        assert f'\n    "{path}": ' + "{" in types, client_files.STALE.format(
            "client/schema.d.ts"
        )
        for operation in operations.values():
            for ref in re.findall(
                r'"#/components/schemas/(\w+)"', json.dumps(operation)
            ):
                assert f"\n        {ref}: " + "{" in types, (path, ref)


def answers(client) -> list[tuple[str, str, object]]:
    """(method, path in the schema, answer) for a real answer of each kind:
    the first example of each endpoint that shows some (the project's own
    among them), the backend's endpoints and their refusals."""
    schema = client.app.openapi()
    found = []
    for path, operations in schema["paths"].items():
        body = operations.get("post", {}).get("requestBody", {})
        examples = body.get("content", {}).get("application/json", {}).get("examples")
        if examples:
            example = next(iter(examples.values()))["value"]
            found.append(("post", path, client.post(path, json=example)))
    unknown = {"household": {"people": {"you": {"salary": {"2025": 1}}}}}
    job = client.post("/jobs/calculate", json={"household": EXAMPLE_HOUSEHOLD})
    compare = {"household": EXAMPLE_HOUSEHOLD, "policy": EXAMPLE_POLICY}
    found += [
        ("post", "/calculate", client.post("/calculate", json=compare)),
        ("post", "/compare", client.post("/compare", json=compare)),
        ("post", "/calculate", client.post("/calculate", json=unknown)),  # 400
        ("post", "/calculate", client.post("/calculate", json={"people": {}})),  # 422
        ("post", "/jobs/calculate", job),
        ("get", "/jobs/{job_id}", client.get(f"/jobs/{job.json()['job_id']}")),
        ("get", "/jobs/{job_id}", client.get("/jobs/no-such-job")),  # 404
        ("get", "/health", client.get("/health")),
        ("get", "/parameters/{name}", client.get(f"/parameters/{EXAMPLE_PARAMETER}")),
        ("get", "/parameters/{name}", client.get("/parameters/gov")),  # a group
        ("get", "/parameters/{name}", client.get("/parameters/gov?date=x")),  # 422
        ("get", "/parameters/{name}", client.get("/parameters/no.such")),  # 404
        ("get", "/variables/{name}", client.get(f"/variables/{EXAMPLE_VARIABLE}")),
    ]
    finished(client, job.json()["job_id"])
    return found


def test_answers_are_what_the_schema_says(client, schema):
    """Every answer matches the schema of its status: fields the API always
    sends are required (``message: string | null``, not optional), and no
    error answers in a shape the types do not know."""
    checked = set()
    for method, path, response in answers(client):
        documented = schema["paths"][path][method]["responses"]
        status = str(response.status_code)
        assert status in documented, f"{method} {path}: {status} is not documented"
        body_schema = documented[status]["content"]["application/json"]["schema"]
        validator = jsonschema_rs.Draft202012Validator(
            {**body_schema, "components": schema["components"]}
        )
        errors = [error.message for error in validator.iter_errors(response.json())]
        assert not errors, (method, path, status, errors)
        checked.add((path, status))
    assert {("/calculate", "200"), ("/compare", "200"), ("/health", "200")} <= checked


# --- With Node: `make test-client` ----------------------------------------


def tsc(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    """Type-check ``code`` as a frontend's file beside a copy of client/
    (imported as "./client"), with client/tsconfig.json's settings."""
    assert TSC.exists(), "client/node_modules is missing: run `make test-client`"
    (tmp_path / "client").symlink_to(CLIENT)
    (tmp_path / "usage.ts").write_text(code)
    config = {"extends": str(CLIENT / "tsconfig.json"), "include": ["usage.ts"]}
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    return subprocess.run(
        [str(TSC), "-p", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path
    )


@pytest.mark.client
def test_the_types_are_openapi_typescripts_for_the_schema():
    stale = client_files.stale()

    assert not stale, stale


@pytest.mark.client
def test_the_client_and_the_browser_page_type_check():
    assert TSC.exists(), "client/node_modules is missing: run `make test-client`"
    done = subprocess.run([str(TSC), "-p", str(CLIENT)], capture_output=True, text=True)

    assert done.returncode == 0, done.stdout + done.stderr


CORRECT_USE = """
import { createApiClient, type Household } from "./client";

const api = createApiClient("http://127.0.0.1:8000");
const household: Household = { people: { you: { age: { "2025": 40 }, income_tax: { "2025": null } } } };

export async function use(): Promise<void> {
  const calculated = await api.POST("/calculate", { body: { household } });
  if (calculated.data) {
    const message: string | null = calculated.data.message;
    const result: { [key: string]: unknown } = calculated.data.result;
    console.log(message, result);
  } else {
    const problem: string = calculated.error.message;
    console.log(problem, calculated.error.errors);
  }
  const policy = { "gov.example": { "2025-01-01.2100-12-31": 1 } };
  const compared = await api.POST("/compare", { body: { household, policy } });
  console.log(compared.data?.result.change);
  const job = await api.POST("/jobs/compare", { body: { household, policy } });
  if (job.data) {
    const status = await api.GET("/jobs/{job_id}", {
      params: { path: { job_id: job.data.job_id } },
    });
    const state: "pending" | "ok" | "error" | undefined = status.data?.status;
    console.log(state, status.data?.status_code);
  }
  const parameter = await api.GET("/parameters/{name}", {
    params: { path: { name: "gov" }, query: { date: "2025-01-01" } },
  });
  const children: string[] | null | undefined = parameter.data?.result.children;
  const variable = await api.GET("/variables/{name}", { params: { path: { name: "age" } } });
  const health = await api.GET("/health");
  console.log(children, variable.data?.result.possible_values, health.data?.version);
}
"""


@pytest.mark.client
def test_a_correct_use_of_the_client_type_checks(tmp_path):
    done = tsc(tmp_path, CORRECT_USE)

    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.client
@pytest.mark.parametrize(
    ("wrong", "right"),
    [
        # A request field of the wrong type.
        ("body: { household }", 'body: { household, policy: "none" }'),
        # An answer's nullable field read as if it were always there.
        ("const message: string | null", "const message: string"),
        # A path the API does not have.
        ('"/variables/{name}", {', '"/variable/{name}", {'),
    ],
    ids=["request-field", "nullable-answer", "unknown-path"],
)
def test_a_wrong_use_of_the_client_fails_the_type_check(tmp_path, wrong, right):
    code = CORRECT_USE.replace(wrong, right, 1)
    assert code != CORRECT_USE

    done = tsc(tmp_path, code)

    assert done.returncode != 0
    assert "usage.ts" in done.stdout and "error TS" in done.stdout, done.stdout


@pytest.mark.client
def test_the_docs_example_type_checks(tmp_path):
    docs = (ROOT / "docs" / "deploy.md").read_text()
    section = docs.split("## Wire the Vercel frontend", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```ts\n(.*?)```", section, re.S)

    done = tsc(tmp_path, example)

    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.client
def test_make_client_installs_from_the_lock():
    lock = json.loads((CLIENT / "package-lock.json").read_text())
    package = json.loads((CLIENT / "package.json").read_text())
    pinned = {**package["dependencies"], **package["devDependencies"]}
    for name, version in pinned.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned exactly"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, name
    assert shutil.which("node"), "make test-client needs Node 20 or later"
