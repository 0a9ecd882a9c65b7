"""The deploy gate: what must hold before anything is sent to Modal.

The Makefile runs these checks before every target that calls Modal, joined
with ``&&`` in one shell command, so the first failed check stops the whole
command, even under ``make -i`` or ``make -k``. A check that passes prints
nothing (``check-auth`` says which workspace it saw); one that fails says on
stderr what is wrong and how to fix it, and exits non-zero. Standard library
only, so it runs before ``make install``. Every value arrives as an argument:
none is ever pasted into a shell command.

Commands (``python3 scripts/deploy_gate.py COMMAND --help`` for options):

  check-env      ENV is one of main, staging, testing
  check-auth     `modal token info` shows the policyengine workspace
  check-app      modal_app.py names the app after the repository
  check-secrets  no secret is written into the code Modal ships
  check-lock     uv.lock matches pyproject.toml
  check-stop     `make stop` was confirmed with CONFIRM=<app>
  check-serve    `make serve` is not aimed at main
  deploy         `modal deploy`, then scripts/verify.py on the live URLs
  urls           print the URLs of an environment
  vercel-env     print the commands that point the Vercel frontend at one
"""

# The gate runs on the machine's python3, which may be older than the
# project's Python (macOS ships 3.9): annotations stay unevaluated.
from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

# The only workspace and environments anything is deployed to. The Makefile
# holds the same values for the URLs; tests/test_deploy_gate.py checks they
# agree.
WORKSPACE = "policyengine"
ENVIRONMENTS = ("main", "staging", "testing")
TOKEN_VARIABLES = ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")

# What Modal ships into the image: the secret scan looks at these.
SHIPPED = ("modal_app.py", "api", "policyengine_backend")
# Files that hold secrets by their nature, wherever they are in the shipped code.
SECRET_FILES = (".env*", "*.pem", "*.key")
# Well-known token formats (Anthropic, OpenAI, GitHub, Slack, AWS, Hugging
# Face, Modal) and private keys.
SECRET_TOKENS = re.compile(
    r"sk-ant-|sk-proj-|gh[pousr]_[A-Za-z0-9]{20}|github_pat_|xox[abpr]-"
    r"|AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{20}|(^|[^A-Za-z0-9])a[ks]-[A-Za-z0-9]{16}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY"
)
# A long literal assigned to a name like api_key, secret, token or password.
SECRET_ASSIGNMENTS = re.compile(
    r"""(api_?key|secret|token|passw(or)?d)[a-z0-9_]*["']?\s*[:=]\s*[rbf]?["'][^"'\s]{12}""",
    re.IGNORECASE,
)

# `modal token info` may colour its output.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
WORKSPACE_LINE = re.compile(r"^\s*Workspace:\s*(\S*)")

VERIFY_SCRIPT = Path(__file__).resolve().with_name("verify.py")

# Per environment: Vercel's environment, and the command to run after it.
VERCEL = {
    "main": ("production", "vercel --prod --force --yes --scope policy-engine"),
    "staging": ("preview", "vercel --force --yes --scope policy-engine"),
    "testing": (
        "development",
        "vercel env pull .env.local --yes --scope policy-engine",
    ),
}


class GateFailed(Exception):
    """A check failed: ``lines`` say what is wrong and how to fix it."""

    def __init__(self, *lines: str, exit_code: int = 1):
        super().__init__(lines[0] if lines else "")
        self.lines = list(lines)
        self.exit_code = exit_code


def run(
    command: Sequence[str], capture: bool = False, env: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """(exit code, stdout and stderr together when ``capture``) of a command.

    A command that cannot be started at all counts as a failure (127, like
    the shell), never as an exception.
    """
    try:
        result = subprocess.run(
            list(command),
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
            text=True,
            errors="replace",
            env=env,
            check=False,
        )
    except OSError as error:
        return 127, str(error)
    # A command killed by a signal: report it as the shell would (128 + n).
    code = result.returncode if result.returncode >= 0 else 128 - result.returncode
    return code, result.stdout or ""


def indented(output: str) -> list[str]:
    """A command's output, each line behind ``  | ``."""
    return ["  | " + line for line in output.rstrip("\n").split("\n")]


# --- The checks ------------------------------------------------------------


def check_env(env: str, from_shell: bool = False) -> str:
    """``env`` if it is one of ENVIRONMENTS, exactly; refuses anything else."""
    if env in ENVIRONMENTS:
        return env
    lines = [
        f"ERROR: ENV={env} is not an environment of the {WORKSPACE} workspace.",
        f"Use one of: {', '.join(ENVIRONMENTS)}. For example: make deploy ENV=staging",
    ]
    if from_shell:
        # POSIX shells use ENV for a startup file, so a stray one is likely.
        lines.append("ENV came from your shell; pass it on the command line instead.")
    raise GateFailed(*lines, exit_code=2)


def token_message(use_token: bool, environ: Mapping[str, str]) -> str:
    """What to say about MODAL_TOKEN_ID/MODAL_TOKEN_SECRET before asking Modal.

    Locally they are dropped (they would override your profile and could
    point at another workspace); CI opts in with MODAL_USE_TOKEN=1 and must
    then set both. Returns "" when there is nothing to say, and a line
    starting with "NOTE:" when it belongs on stderr.
    """
    given = [name for name in TOKEN_VARIABLES if environ.get(name)]
    if use_token:
        if len(given) < len(TOKEN_VARIABLES):
            raise GateFailed(
                "ERROR: MODAL_USE_TOKEN=1 but MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are not both set.",
                "In CI, set both from the repository secrets. Locally, leave MODAL_USE_TOKEN "
                f"unset and use your {WORKSPACE} profile.",
            )
        return (
            "Using the token in MODAL_TOKEN_ID/MODAL_TOKEN_SECRET (MODAL_USE_TOKEN=1)."
        )
    if given:
        return (
            "NOTE: ignoring MODAL_TOKEN_ID/MODAL_TOKEN_SECRET from your shell: "
            "they would override your Modal profile."
        )
    return ""


def workspaces_in(token_info: str) -> list[str]:
    """Every workspace that ``modal token info`` names, sorted, each once.

    Only a line that starts with ``Workspace:`` counts; one with no name
    after it gives "".
    """
    names: set[str] = set()
    for line in ANSI_ESCAPE.sub("", token_info).split("\n"):
        match = WORKSPACE_LINE.match(line)
        if match:
            names.add(match.group(1))
    return sorted(names)


def not_authenticated(
    modal: str, code: int, output: str, use_token: bool
) -> GateFailed:
    """The refusal when ``modal token info`` does not show WORKSPACE alone."""
    seen = " ".join(workspaces_in(output)) or "nothing"
    lines = [
        f"ERROR: Modal is not authenticated to the '{WORKSPACE}' workspace, so nothing was done."
    ]
    if code != 0:
        lines.append(f"  'modal token info' failed (exit code {code}).")
    lines.append(f"  Saw workspace: '{seen}'")
    lines += indented(output)
    if use_token:
        lines.append(
            f"The token in MODAL_TOKEN_ID/MODAL_TOKEN_SECRET must belong to the {WORKSPACE} "
            "workspace: replace those secrets."
        )
    else:
        lines += [
            "Fix it with:",
            f"  {modal} token new --profile {WORKSPACE}",
            f"  {modal} profile activate {WORKSPACE}",
            f'  then check that `modal token info` shows "Workspace: {WORKSPACE}".',
        ]
    lines.append(
        f"No access? Ask a workspace owner to invite you: https://modal.com/settings/{WORKSPACE}"
    )
    return GateFailed(*lines)


def check_auth(
    env: str,
    modal: str,
    modal_command: Sequence[str],
    use_token: bool,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """Pass only if ``modal token info`` shows WORKSPACE and nothing else.

    ``modal`` is the CLI's path; ``modal_command`` is how the Makefile calls
    it (without the token variables unless ``use_token``), so the gate asks
    Modal exactly as the target will. Returns the line to print.
    """
    check_env(env)
    if shutil.which(modal) is None:
        raise GateFailed(
            f"ERROR: the Modal CLI is not installed (no {modal}). Run: make install"
        )
    message = token_message(use_token, environ)
    if message:
        stream = sys.stderr if message.startswith("NOTE:") else sys.stdout
        print(message, file=stream, flush=True)
    code, output = run([*modal_command, "token", "info"], capture=True)
    if code != 0 or workspaces_in(output) != [WORKSPACE]:
        raise not_authenticated(modal, code, output, use_token)
    return f"Modal workspace: {WORKSPACE}, environment: {env}"


def app_problems(app: str, modal_app: str) -> list[str]:
    """Why modal_app.py's text does not name the app ``app``; [] if it does.

    It must say ``APP_NAME = "<app>"`` and create the app only with
    ``modal.App(APP_NAME)``, never under a generic name.
    """
    lines = modal_app.split("\n")
    named = any(
        re.match(rf'^APP_NAME = "{re.escape(app)}"\s*$', line) for line in lines
    )
    creations = [line for line in lines if re.match(r"^[^#]*modal\.App\(", line)]
    if named and all("modal.App(APP_NAME)" in line for line in creations):
        return []
    found = [line for line in lines if re.search(r"^APP_NAME|modal\.App\(", line)]
    return [
        "ERROR: modal_app.py must name the app after the repository: "
        f'APP_NAME = "{app}" and app = modal.App(APP_NAME).',
        "  found: " + "".join(f"{line} " for line in found),
    ]


def check_app(app: str, project: Path = Path(".")) -> None:
    path = project / "modal_app.py"
    text = path.read_text(errors="replace") if path.is_file() else ""
    problems = app_problems(app, text)
    if problems:
        raise GateFailed(*problems)


def shipped_files(project: Path) -> Iterator[Path]:
    """Every file and folder under SHIPPED (folders too: a folder can be
    named like a secret file)."""
    for name in SHIPPED:
        top = project / name
        if top.is_file():
            yield top
        for folder, subfolders, files in os.walk(top):
            subfolders.sort()
            for entry in sorted(subfolders + files):
                yield Path(folder) / entry


def secret_places(project: Path = Path(".")) -> list[str]:
    """``path:line`` of each line that looks like a secret, and ``path:file``
    of each secret-like file in the shipped code; never the secret itself (these end
    up in CI logs)."""
    places = set()
    for path in shipped_files(project):
        relative = path.relative_to(project)
        if relative.parts[0] in SHIPPED and any(
            fnmatch.fnmatch(path.name, pattern) for pattern in SECRET_FILES
        ):
            places.add(f"{relative.as_posix()}:file")
        if not path.is_file() or "__pycache__" in relative.parts:
            continue
        data = path.read_bytes()
        if b"\0" in data:  # binary
            continue
        for number, line in enumerate(data.decode("utf-8", "replace").split("\n"), 1):
            if SECRET_TOKENS.search(line) or SECRET_ASSIGNMENTS.search(line):
                places.add(f"{relative.as_posix()}:{number}")
    return sorted(places)


def check_secrets(project: Path = Path(".")) -> None:
    places = secret_places(project)
    if places:
        raise GateFailed(
            "ERROR: these places look like secrets written into the code that Modal would ship:",
            *(f"  {place}" for place in places),
            "Store secrets in Modal instead: modal secret create NAME KEY=value, "
            "then add NAME to SECRET_NAMES in modal_app.py.",
        )


def check_lock(uv: str, venv: str) -> None:
    """uv.lock must match pyproject.toml: the image installs uv.lock as it
    is, and a deploy never relocks (that would ship versions no test ran)."""
    if shutil.which(uv) is None:
        raise GateFailed(f"ERROR: uv is not installed (no {uv}). Run: make install")
    # uv works on the venv the Makefile uses, not the project's default .venv.
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": os.path.abspath(venv)}
    code, output = run([uv, "lock", "--check", "--offline"], capture=True, env=env)
    if code != 0:
        raise GateFailed(
            "ERROR: uv.lock does not match pyproject.toml, so nothing can be deployed until they match.",
            *indented(output),
            "The image installs exactly uv.lock. Fix it with: make lock (runs uv lock),",
            "then make test, then commit pyproject.toml and uv.lock together.",
        )


def check_stop(app: str, env: str, confirm: str) -> None:
    """A stopped app is gone until the next deploy: ask for its name."""
    if confirm != app:
        raise GateFailed(
            "ERROR: a stopped app cannot be restarted, only deployed again.",
            f"If you mean it, run: make stop ENV={env} CONFIRM={app}",
        )


def check_serve(env: str) -> None:
    if env == "main":
        raise GateFailed(
            "ERROR: modal serve makes a temporary app that stops with your terminal; it is not for main.",
            "Use make deploy ENV=main for production, or make serve ENV=testing.",
        )


# --- After the gate ----------------------------------------------------------


def deploy(
    app: str,
    env: str,
    modal_command: Sequence[str],
    health_url: str,
    api_url: str,
    wait: str,
    urls_given: bool = False,
) -> str:
    """``modal deploy``, then scripts/verify.py; a deploy that does not pass
    verification fails. Returns the line to print."""
    check_env(env)
    print(f"Deploying {app} to the {WORKSPACE} workspace, environment {env}:")
    print(f"+ modal deploy modal_app.py --env {env}", flush=True)
    code, _ = run([*modal_command, "deploy", "modal_app.py", "--env", env])
    if code != 0:
        raise GateFailed("ERROR: modal deploy failed.")
    if urls_given:
        print("NOTE: verifying the URLs given on the command line.", flush=True)
    verify = ["--health-url", health_url, "--api-url", api_url, "--wait", wait]
    code, _ = run([sys.executable, str(VERIFY_SCRIPT), *verify])
    if code != 0:
        raise GateFailed(
            f"ERROR: {app} was deployed to {env} but does not pass the checks above.",
            f"Look at: make logs ENV={env}. Fix it, then make deploy ENV={env} again.",
        )
    return f"Deployed and verified: {api_url}"


def url_lines(api_url: str, health_url: str) -> list[str]:
    return [f"API:    {api_url}", f"Docs:   {api_url}/docs", f"Health: {health_url}"]


def shell_quote(text: str) -> str:
    """``text`` in single quotes, always (unlike shlex.quote), for commands
    shown to be pasted into a shell."""
    return "'" + text.replace("'", "'\\''") + "'"


def vercel_lines(env: str, api_url: str) -> list[str]:
    target, then = VERCEL[check_env(env)]
    return [
        f"# Run these in the frontend's repository (Vercel {target} environment):",
        f"printf '%s' {shell_quote(api_url)} | vercel env add NEXT_PUBLIC_API_URL {target}",
        then,
    ]


# --- Command line ------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=summary)

    # Values from the Makefile's command line (ENV, CONFIRM) come as
    # --option=value, so one starting with "-" is still a value.
    env = command("check-env", "ENV is one of main, staging, testing")
    env.add_argument("--env", required=True)
    env.add_argument(
        "--from-shell", action="store_true", help="ENV came from the environment"
    )

    auth = command("check-auth", "Modal is authenticated to the policyengine workspace")
    auth.add_argument("--env", required=True)
    auth.add_argument("--modal", required=True, help="the Modal CLI")
    auth.add_argument("--use-token", action="store_true", help="MODAL_USE_TOKEN=1 (CI)")
    auth.add_argument("modal_command", nargs="+", help="how to call Modal (after --)")

    app = command("check-app", "modal_app.py names the app after the repository")
    app.add_argument("--app", required=True)

    command(
        "check-secrets",
        "no secret is written into modal_app.py, api/ or policyengine_backend/",
    )

    lock = command("check-lock", "uv.lock matches pyproject.toml")
    lock.add_argument("--uv", required=True)
    lock.add_argument("--venv", required=True)

    stop = command("check-stop", "make stop was confirmed with CONFIRM=<app>")
    stop.add_argument("--app", required=True)
    stop.add_argument("--env", required=True)
    stop.add_argument("--confirm", required=True)

    serve = command("check-serve", "make serve is not aimed at main")
    serve.add_argument("--env", required=True)

    ship = command("deploy", "modal deploy, then scripts/verify.py")
    ship.add_argument("--app", required=True)
    ship.add_argument("--env", required=True)
    ship.add_argument("--health-url", required=True)
    ship.add_argument("--api-url", required=True)
    ship.add_argument("--wait", required=True)
    ship.add_argument(
        "--urls-given", action="store_true", help="URLs from the command line"
    )
    ship.add_argument("modal_command", nargs="+", help="how to call Modal (after --)")

    urls = command("urls", "print the URLs of an environment")
    urls.add_argument("--api-url", required=True)
    urls.add_argument("--health-url", required=True)

    vercel = command("vercel-env", "print the commands that point Vercel at ENV")
    vercel.add_argument("--env", required=True)
    vercel.add_argument("--api-url", required=True)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        lines: list[str] = []
        if args.command == "check-env":
            check_env(args.env, args.from_shell)
        elif args.command == "check-auth":
            lines = [
                check_auth(args.env, args.modal, args.modal_command, args.use_token)
            ]
        elif args.command == "check-app":
            check_app(args.app)
        elif args.command == "check-secrets":
            check_secrets()
        elif args.command == "check-lock":
            check_lock(args.uv, args.venv)
        elif args.command == "check-stop":
            check_stop(args.app, args.env, args.confirm)
        elif args.command == "check-serve":
            check_serve(args.env)
        elif args.command == "deploy":
            lines = [
                deploy(
                    args.app,
                    args.env,
                    args.modal_command,
                    args.health_url,
                    args.api_url,
                    args.wait,
                    args.urls_given,
                )
            ]
        elif args.command == "urls":
            lines = url_lines(args.api_url, args.health_url)
        elif args.command == "vercel-env":
            lines = vercel_lines(args.env, args.api_url)
    except GateFailed as failure:
        print("\n".join(failure.lines), file=sys.stderr)
        return failure.exit_code
    if lines:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
