"""What `pip install rag-vqa` pulls: the runtime only (never the test tools), and every
third-party module the package imports is declared (as a dependency or in an extra)."""

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rag_vqa", "retriever", "generator", "eval")
DEV_TOOLS = {"pytest", "hypothesis", "selenium"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _imported_top_level_modules() -> set[str]:
    files = [ROOT / "app.py", ROOT / "demo_server.py"]
    for package in PACKAGES:
        files += (ROOT / package).rglob("*.py")
    modules = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - set(PACKAGES) - {"app", "demo_server"}


def test_runtime_dependencies_hold_no_test_tools():
    runtime = {_name(r) for r in _project()["dependencies"]}
    assert not runtime & DEV_TOOLS
    assert DEV_TOOLS <= {_name(r) for r in _project()["optional-dependencies"]["dev"]}


def test_every_imported_module_is_declared():
    project = _project()
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(_imported_top_level_modules()):
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not names & declared:
            missing[module] = sorted(names)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
