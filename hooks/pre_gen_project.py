"""Check the answers before cookiecutter renders a single file.

Cookiecutter runs this file after filling in the answers below. A non-zero
exit stops generation and removes the project folder, so a bad answer leaves
nothing on disk. The checks live in functions so that the template's tests
can import and exercise them directly.
"""

import json
import re
import sys
import unicodedata

# The deployed URL of a web function is
#   https://policyengine-<env>--<app>-<function>.modal.run
# and everything before ".modal.run" is one DNS label, at most 63 characters.
# The longest one this template produces is the FastAPI app in staging/testing.
DNS_LABEL_LIMIT = 63
LONGEST_URL_PREFIX = "policyengine-staging--"
LONGEST_FUNCTION_SUFFIX = "-fastapi-app"
MAX_REPO_NAME_LENGTH = DNS_LABEL_LIMIT - len(LONGEST_URL_PREFIX) - len(LONGEST_FUNCTION_SUFFIX)

# The app name is the repository's name, shared with the Vercel project and
# the Modal app list of the whole workspace: it must say what it serves.
GENERIC_NAMES = frozenset(
    {
        "api",
        "app",
        "backend",
        "server",
        "service",
        "dashboard",
        "tool",
        "test",
        "demo",
        "example",
        "policyengine",
        "modal",
        "my-app",
        "my-backend",
        "my-dashboard-backend",
        "new-backend",
    }
)
FALLBACK_SUGGESTION = "household-calculator"

REPO_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
SECRET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
COUNTRIES = ("us", "uk")
PYTHON_VERSIONS = ("3.12", "3.13")
KNOWN_SECRETS = (
    "policyengine-logfire",
    "gcp-credentials",
    "huggingface-token",
    "anthropic-api-key",
)


def slug(text: str) -> str:
    """``text`` as kebab-case words, starting with a letter, at most the limit.

    Accents are dropped rather than the letters that carry them ("é" -> "e"),
    and a name cut at the limit ends at a whole word.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    name = "-".join(words).lstrip("-0123456789")
    while len(name) > MAX_REPO_NAME_LENGTH and "-" in name:
        name = name.rsplit("-", 1)[0]
    return name[:MAX_REPO_NAME_LENGTH]


def is_good_repo_name(name: str) -> bool:
    return bool(
        REPO_NAME_PATTERN.match(name)
        and name not in GENERIC_NAMES
        and len(name) <= MAX_REPO_NAME_LENGTH
    )


def suggest_repo_name(name: str, project_name: str = "") -> str:
    """A name that passes ``check_repo_name``: ``name`` tidied up if that
    is enough, else one made from the project's name, else a fallback."""
    for candidate in (slug(name), slug(project_name)):
        if is_good_repo_name(candidate):
            return candidate
    return FALLBACK_SUGGESTION


def check_repo_name(name: str, project_name: str = "") -> list[str]:
    """Problems with ``repo_name``, each a full sentence with a fix."""
    shown = json.dumps(name)
    fix = f'Try repo_name="{suggest_repo_name(name, project_name)}".'
    if not name:
        return [f"repo_name is empty. {fix}"]
    problems = []
    if not REPO_NAME_PATTERN.match(name):
        problems.append(
            f"repo_name {shown} is not kebab-case: use lowercase letters and "
            "digits in words joined by single hyphens, starting with a letter "
            f"(no spaces, underscores, capitals or leading/trailing hyphens). {fix}"
        )
    if name in GENERIC_NAMES:
        problems.append(
            f"repo_name {shown} is too generic: the workspace holds every "
            f"team's apps, so name it after what it serves. {fix}"
        )
    if len(name) > MAX_REPO_NAME_LENGTH:
        label = f"{LONGEST_URL_PREFIX}{name}{LONGEST_FUNCTION_SUFFIX}"
        problems.append(
            f"repo_name {shown} is {len(name)} characters; at most "
            f"{MAX_REPO_NAME_LENGTH} fit, because the Modal URL label "
            f"{label!r} would be {len(label)} characters and DNS allows "
            f"{DNS_LABEL_LIMIT}. {fix}"
        )
    return problems


def check_one_line(key: str, value: str) -> list[str]:
    if not value.strip():
        return [f"{key} is empty. Give a short, one-line value."]
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return [
            f"{key} {json.dumps(value)} contains a line break or control "
            "character. Give a single line of plain text."
        ]
    return []


def check_choice(key: str, value: str, allowed: tuple[str, ...]) -> list[str]:
    if value in allowed:
        return []
    return [f"{key} {json.dumps(value)} is not one of {', '.join(allowed)}."]


def parse_secret_names(raw: str) -> list[str]:
    """Split the comma-separated ``modal_secrets`` answer into names.

    "none" alone means no secret: at the prompt, an empty answer takes the
    default (policyengine-logfire). modal_app.py reads the answer alike.
    """
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return [] if names == ["none"] else names


def check_secret_names(raw: str) -> list[str]:
    problems = []
    names = parse_secret_names(raw)
    for name in names:
        if not SECRET_NAME_PATTERN.match(name):
            problems.append(
                f"modal_secrets entry {json.dumps(name)} is not a valid Modal "
                "secret name: use letters, digits, '-', '_' or '.', at most 63 "
                "characters. Separate several names with commas."
            )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(
            f"modal_secrets names {', '.join(duplicates)} more than once. List each secret once."
        )
    return problems


def unknown_secret_names(raw: str) -> list[str]:
    return [name for name in parse_secret_names(raw) if name not in KNOWN_SECRETS]


def check_answers(answers: dict) -> list[str]:
    """Every problem with the answers; an empty list means they are fine."""
    return [
        *check_one_line("project_name", answers["project_name"]),
        *check_repo_name(answers["repo_name"], answers["project_name"]),
        *check_one_line("description", answers["description"]),
        *check_choice("country", answers["country"], COUNTRIES),
        *check_choice("python_version", answers["python_version"], PYTHON_VERSIONS),
        *check_secret_names(answers["modal_secrets"]),
    ]


def main(answers: dict) -> int:
    problems = check_answers(answers)
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if problems:
        # Cookiecutter follows a failed hook with a traceback of its own
        # (it cannot be turned off from a template): say where to look.
        print(
            "Nothing was generated. Fix the answers above and run again; the "
            "traceback cookiecutter prints next only says that this check failed.",
            file=sys.stderr,
        )
        return 1
    for name in unknown_secret_names(answers["modal_secrets"]):
        print(
            f"NOTE: secret {name!r} is not one of the workspace's known secrets "
            f"({', '.join(KNOWN_SECRETS)}); create it with `modal secret create` "
            "before deploying.",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    # The answers arrive as JSON data, never as Python source: tojson writes
    # ' as \u0027, so no answer can close this ''' literal.
    sys.exit(main(json.loads(r"""{{ cookiecutter | tojson }}""")))
