"""The README's and docs/' examples work as written, against a running server.

Each `curl` example is run by bash exactly as the README shows it (only the
port differs), and its answer must hold every number the README quotes next
to it; the frontend's job poll loop is run by Node. The server is this
session's app, already warm, served by uvicorn on the test client's own
event loop. Skipped where curl, jq or node is missing.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY

ROOT = Path(__file__).resolve().parents[2]
# The README and the docs it links to, read as one text.
README = "\n".join(
    path.read_text()
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
)
DOCUMENTED_URL = "http://127.0.0.1:8000"
# A fenced block and the JSON block that follows it, if any.
BLOCK = re.compile(
    r"```(\w+)\n(.*?)```(?:\n+(?:In the answer, `[^`]+` is:\n+)?```json\n(.*?)```)?",
    re.S,
)
# A number outside quotes (not a period such as "2025").
NUMBER = re.compile(r'(?<![\w".])-?\d+(?:\.\d+)?(?![\w".])')

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "curl", "jq", "node")),
    reason="needs bash, curl, jq and node",
)


def blocks(language: str) -> list[tuple[str, str | None]]:
    return [
        (code, documented)
        for found_language, code, documented in BLOCK.findall(README)
        if found_language == language
    ]


# Each example that starts with a curl to the local server.
CURL_EXAMPLES = [
    (code, documented or None)
    for code, documented in blocks("bash")
    if code.startswith("curl") and DOCUMENTED_URL in code.splitlines()[0]
]


def run(command: str, url: str, cwd: Path) -> str:
    script = command.replace(DOCUMENTED_URL, url)
    done = subprocess.run(
        ["bash", "-c", script.replace("curl -s ", "curl -s --fail-with-body ")],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, (script, done.stdout, done.stderr)
    return done.stdout


def test_the_readme_has_examples_for_every_endpoint():
    shown = " ".join(code for code, _ in CURL_EXAMPLES)
    for path in ("/calculate", "/compare", "/parameters/", "/variables/"):
        assert path in shown, path
    assert any("/jobs" in code for code, _ in blocks("bash"))
    assert any("async function runJob" in code for code, _ in blocks("js"))


@pytest.mark.parametrize(
    ("command", "documented"),
    CURL_EXAMPLES,
    ids=[re.search(r"8000(/[^?'\s\\]*)", code).group(1) for code, _ in CURL_EXAMPLES],
)
def test_curl_example(served, tmp_path, command, documented):
    answer = json.loads(run(command, served, tmp_path))

    assert answer["status"] == "ok", answer
    if documented:
        shown = set(NUMBER.findall(json.dumps(answer)))
        quoted = set(NUMBER.findall(documented))
        # Figures change with the model: after an upgrade, update the README.
        assert quoted <= shown, f"README figures not in the answer: {quoted - shown}"


def test_the_shell_job_loop(served, client, tmp_path):
    (loop,) = [code for code, _ in blocks("bash") if "/jobs/calculate " in code]
    body = {"household": EXAMPLE_HOUSEHOLD, "policy": EXAMPLE_POLICY}
    (tmp_path / "request.json").write_text(json.dumps(body))

    answer = json.loads(run(loop, served, tmp_path))

    assert answer == client.post("/calculate", json=body).json()


def run_job_in_node(
    url: str, body: dict, tmp_path: Path
) -> subprocess.CompletedProcess:
    (snippet,) = [code for code, _ in blocks("js") if "async function runJob" in code]
    script = tmp_path / "job.mjs"
    script.write_text(
        snippet
        + "\nrunJob(process.argv[2], JSON.parse(process.argv[3]), 50).then("
        + "(result) => console.log(JSON.stringify(result)),"
        + "(error) => { console.error(error.message); process.exit(1); });\n"
    )
    return subprocess.run(
        ["node", str(script), url, json.dumps(body)], capture_output=True, text=True
    )


def test_the_frontend_job_loop(served, client, tmp_path):
    body = {"household": EXAMPLE_HOUSEHOLD, "policy": EXAMPLE_POLICY}

    done = run_job_in_node(served, body, tmp_path)

    assert done.returncode == 0, done.stderr
    assert (
        json.loads(done.stdout) == client.post("/calculate", json=body).json()["result"]
    )


def test_the_frontend_job_loop_reports_a_refusal(served, tmp_path):
    household = json.loads(json.dumps(EXAMPLE_HOUSEHOLD))
    household["people"]["parent"]["salary"] = {"2025": 1}

    done = run_job_in_node(served, {"household": household}, tmp_path)

    assert done.returncode == 1
    assert "household.people.parent.salary: unknown variable" in done.stderr
