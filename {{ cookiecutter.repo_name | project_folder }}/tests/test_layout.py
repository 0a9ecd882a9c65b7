"""The two rooms: api/ is the project's, policyengine_backend/ the
machinery's, and the machinery never reaches into the project's code."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_machinery_never_imports_the_projects_code():
    modules = sorted((ROOT / "policyengine_backend").rglob("*.py"))
    assert modules
    for path in modules:
        reached = {
            name for name in imported_modules(path) if name.split(".")[0] == "api"
        }
        assert not reached, f"{path.relative_to(ROOT)} imports {reached}"


def test_the_projects_code_uses_the_machinery_through_its_package():
    # A module of api/ may import policyengine_backend's public names and
    # its examples, not reach into its internals, which the template may
    # change in any update.
    allowed = {"policyengine_backend", "policyengine_backend.examples"}
    for path in sorted((ROOT / "api").rglob("*.py")):
        reached = {
            name
            for name in imported_modules(path)
            if name.startswith("policyengine_backend") and name not in allowed
        }
        assert not reached, f"{path.relative_to(ROOT)} imports {reached}"
