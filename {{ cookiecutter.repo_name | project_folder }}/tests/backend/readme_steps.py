"""README, "Add your own endpoint": its steps as code, for the tests that
follow them (in a copy of the project, never in the project itself).

The steps are applied to ``api/routes/`` as it is now, not as it was
rendered: an engineer who has added routers of their own (or followed these
very steps) still gets the README's endpoint added next to them.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = (ROOT / "README.md").read_text().split("## Add your own endpoint")[1]
SECTION = SECTION.split("\n## ")[0]
ROUTE_MODULE, INCLUDE, TEST_MODULE = re.findall(r"```python\n(.*?)```", SECTION, re.S)
MODULE = "net_income"


def with_readme_include(routes: str) -> str:
    """``api/routes/__init__.py`` after step 2: the README's module imported
    next to the others and its router added to ROUTERS (unchanged if it is
    there already)."""
    tree = ast.parse(routes)
    lines = routes.splitlines(keepends=True)
    (imported,) = [
        node
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "api.routes"
    ]
    (routers,) = [
        node
        for node in tree.body
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "ROUTERS"
    ]
    names = [alias.name for alias in imported.names]
    listed = [ast.unparse(item) for item in routers.value.elts]  # type: ignore[attr-defined]
    if MODULE not in names:
        names.append(MODULE)
    if f"{MODULE}.router" not in listed:
        listed.append(f"{MODULE}.router")
    # Replace the later statement first, so the earlier one's lines stay put.
    for node, text in sorted(
        [
            (imported, f"from api.routes import {', '.join(names)}\n"),
            (routers, f"ROUTERS: list[APIRouter] = [{', '.join(listed)}]\n"),
        ],
        key=lambda pair: pair[0].lineno,
        reverse=True,
    ):
        lines[node.lineno - 1 : node.end_lineno] = [text]
    return "".join(lines)


def follow(project: Path) -> None:
    """Steps 1 to 3 in ``project`` (step 4, `make client`, is a command)."""
    (project / "api" / "routes" / f"{MODULE}.py").write_text(ROUTE_MODULE)
    routes = project / "api" / "routes" / "__init__.py"
    routes.write_text(with_readme_include(routes.read_text()))
    (project / "tests" / f"test_{MODULE}.py").write_text(TEST_MODULE)
