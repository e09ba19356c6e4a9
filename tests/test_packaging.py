"""pyproject.toml declares what lossnb imports: every third-party module imported anywhere in src/lossnb
belongs to a distribution listed in its dependencies (or, for an optional backend, in an extra), read from
the installed distributions' own metadata."""
import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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
    """Loss files and the export build on the registry and plug into it; the registry imports neither (only the
    contract's checks and the hyperparameter domains, which import nothing of lossnb)."""
    source = (ROOT / "src" / "lossnb" / "losses" / "registry.py").read_text()
    relative = {node.module for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.ImportFrom) and node.level > 0}
    assert relative <= {"contract", "domains"}, relative
    for leaf in ("contract", "domains"):
        text = (ROOT / "src" / "lossnb" / "losses" / f"{leaf}.py").read_text()
        assert not [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ImportFrom) and n.level > 0], leaf


# torch, torchvision and the CUDA wheels they pull in (gigabytes): lent from this environment, not reinstalled
LENT = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$")


def lend_torch(site: Path, lent: Path):
    """Links the lent distributions' top-level files and metadata into `lent`, put on the venv's path by a .pth
    file: pip sees torch installed, and resolves and installs everything else itself."""
    lent.mkdir()
    for dist in md.distributions():
        if not LENT.match(dist.metadata["Name"].lower().replace("_", "-")):
            continue
        for top in {f.parts[0] for f in dist.files if f.parts[0] != ".."}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (lent / top).exists():
                (lent / top).symlink_to(source)
    (site / "lent-torch.pth").write_text(f"{lent}\n")


@pytest.mark.slow
def test_pip_install_e_alone_into_a_clean_venv_imports_every_module(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    lend_torch(site, tmp_path / "lent")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "-e", str(ROOT)], check=True,
                   timeout=1200)
    installed = subprocess.check_output([sys.executable, "-m", "pip", "--python", python, "list", "--format=freeze"],
                                        text=True)
    assert "pandas==" in installed and "papermill==" in installed  # resolved by pip, not lent
    modules = sorted(".".join(p.relative_to(ROOT / "src").with_suffix("").parts).removesuffix(".__init__")
                     for p in (ROOT / "src" / "lossnb").rglob("*.py"))
    code = "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]; print(sys.modules['lossnb'].__file__)"
    imported = subprocess.run([python, "-c", code, *modules], capture_output=True, text=True, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert imported.stdout.strip() == str(ROOT / "src" / "lossnb" / "__init__.py")
