"""pyproject.toml declares what lossnb imports: every third-party module imported anywhere in src/lossnb
belongs to a distribution listed in its dependencies (or, for an optional backend, in an extra), read from
the installed distributions' own metadata."""
import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def imported_top_modules() -> set[str]:
    names = set()
    for path in (ROOT / "src" / "lossnb").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"lossnb", "__future__"}


def normalized(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_third_party_import_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalized(r) for r in project["dependencies"]}
    extras = {normalized(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    owners = md.packages_distributions()
    missing = []
    for module in sorted(imported_top_modules()):
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
        if not dists & (declared | extras):
            missing.append(f"{module} ({', '.join(sorted(dists))})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_module_level_imports_need_no_extra():
    """Only the Ray backend may need an extra; everything else imports with the core dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalized(r) for r in project["dependencies"]}
    owners = md.packages_distributions()
    optional = {"ray", "IPython", "matplotlib_inline"}  # imported inside functions, where present
    for module in imported_top_modules() - optional:
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
        assert dists & declared, module


def test_the_loss_registry_imports_no_module_that_imports_it():
    """Loss files and the export build on the registry and plug into it; the registry imports neither."""
    source = (ROOT / "src" / "lossnb" / "losses" / "registry.py").read_text()
    relative = {node.module for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.ImportFrom) and node.level > 0}
    assert relative <= {"contract"}, relative
