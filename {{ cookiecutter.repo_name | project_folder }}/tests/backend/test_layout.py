"""The two rooms: api/ is the project's, policyengine_backend/ the
machinery's, and the machinery never reaches into the project's code.

The machinery's public names are what ``policyengine_backend`` exports
(and its ``examples``); everything else in it is private by name (a leading
underscore), and `make lint` refuses an import of it from api/.
"""

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "policyengine_backend"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports: ``import a.b``, ``from a import b`` (as
    both ``a`` and ``a.b``, since b may be a module), and the string given
    to ``importlib.import_module`` or ``__import__``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and ast.unparse(node.func) in ("importlib.import_module", "__import__")
        ):
            names.add(node.args[0].value)
    return names


def private_modules() -> set[str]:
    return {
        f"policyengine_backend.{path.stem}"
        for path in PACKAGE.iterdir()
        if path.name.startswith("_")
        and not path.name.startswith("__")
        and (path.suffix == ".py" or path.is_dir())
    }


# The test fixtures load the project's app (``client``): that is their job.
SERVES_THE_PROJECTS_APP = {PACKAGE / "testing.py"}


def test_the_machinery_never_imports_the_projects_code():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert modules
    for path in modules:
        if path in SERVES_THE_PROJECTS_APP:
            continue
        reached = {
            name for name in imported_modules(path) if name.split(".")[0] == "api"
        }
        assert not reached, f"{path.relative_to(ROOT)} imports {reached}"


def test_the_projects_code_uses_only_the_machinerys_public_names():
    # A module of api/ may import policyengine_backend's public names and
    # its examples, not its private modules, which any template update may
    # change.
    private = private_modules()
    for path in sorted((ROOT / "api").rglob("*.py")):
        reached = {
            name
            for name in imported_modules(path)
            if any(
                name == module or name.startswith(module + ".") for module in private
            )
        }
        assert not reached, f"{path.relative_to(ROOT)} imports {reached}"


def test_lint_refuses_every_private_module_in_api():
    # ruff's banned-api (TID251) is what refuses them in `make lint`, in
    # every form of import; a private module added to the machinery must be
    # added there too.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    banned = set(config["tool"]["ruff"]["lint"]["flake8-tidy-imports"]["banned-api"])
    assert private_modules() <= banned
    assert "importlib" in banned  # no module reached by a name in a string
