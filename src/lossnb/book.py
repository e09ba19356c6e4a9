"""Build the book: execute the study notebooks with papermill into book/studies/, then jupyter-book -W.

The study notebooks live in notebooks/ (sources, run top to bottom in JupyterLab); what the book shows are
their executed copies. Heavy results are read from run records, never retrained here.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import papermill
from tqdm import tqdm  # text bars: tqdm.auto would need ipywidgets (and a CDN) in notebooks

STUDIES = ("intro", "protocols", "gradient_analysis", "results", "own_loss", "angular_margin", "convnet_200",
           "regime_pilot", "batchnorm_200", "benchmark_200", "benchmark_run", "loss_catalogue")
# MathJax parts the tex-svg component can load at run time, served from the book's own _static folder
MATHJAX_PARTS = ("tex-svg.js", "input", "ui", "a11y", "sre")


def study_parameters(quick: bool) -> dict[str, dict]:
    """Parameters papermill injects per study. Paths stay relative to notebooks/ (the kernel's cwd), so an
    executed notebook names no folder of the machine that built it and runs again from any clone or Colab."""
    return {
        "intro": {},
        "protocols": {},
        "gradient_analysis": {"points": 41} if quick else {},
        "results": {},
        "own_loss": {},
        "angular_margin": {},
        "convnet_200": {},
        "regime_pilot": {},
        "batchnorm_200": {},
        "benchmark_200": {},
        # the book's example run: short, on real FashionMNIST, into a scratch folder (never into runs/)
        "benchmark_run": {"runs_dir": "../_build/book-example-runs", "progress": False,
                          "run": {"arch": "convnet", "dataset": "fashionmnist", "loss": "ce", "protocol": "demo",
                                  "epochs": 1 if quick else 3, "train_subset": 1000 if quick else 10000}},
        "loss_catalogue": {},
    }


def install_mathjax(root: Path) -> Path:
    """Copy MathJax (npm package mathjax@3, pinned in package.json) into book/_static/mathjax."""
    source = root / "node_modules" / "mathjax" / "es5"
    if not (source / "tex-svg.js").is_file():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=root, check=True)
    target = root / "book" / "_static" / "mathjax"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for part in MATHJAX_PARTS:
        (shutil.copytree if (source / part).is_dir() else shutil.copy2)(source / part, target / part)
    return target


class ChapterFailed(RuntimeError):
    """A chapter that did not execute: one line naming it and what failed (a finding its records no longer
    support, or an error)."""


def execute_studies(root: Path, quick: bool = False, studies=STUDIES) -> list[Path]:
    params = study_parameters(quick)
    out_dir = root / "book" / "studies"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in tqdm(studies, desc="studies", unit="notebook"):
        output = out_dir / f"{name}.ipynb"
        try:
            papermill.execute_notebook(root / "notebooks" / f"{name}.ipynb", output, parameters=params[name],
                                       cwd=root / "notebooks", kernel_name="python3", progress_bar=False)
        except papermill.PapermillExecutionError as err:
            where = "" if err.ename == "FindingUnsupported" else \
                f" ({err.ename}; the executed copy {output} shows where)"
            raise ChapterFailed(f"chapter {name!r}: {err.evalue}{where}") from None
        tidy_executed(output)
        written.append(output)
    return written


# papermill's record of one execution: when, how long, from which folder of the machine that built it
EXECUTION_KEYS = ("start_time", "end_time", "duration", "input_path", "output_path", "environment_variables")


def tidy_executed(path: Path) -> None:
    """An executed chapter as the book keeps it. The cell papermill adds with the book's own parameters is
    build plumbing: folded away (hide-input), as the notebooks' own parameter cells are. Timestamps and
    paths of the execution are dropped, so that executing the chapters again on the same records leaves the
    checkout as it was (the run records written afterwards then say the code was clean)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for key in EXECUTION_KEYS:
        notebook.metadata.get("papermill", {}).pop(key, None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags:
            cell.id = "injected-parameters"  # papermill draws it at random
            if "hide-input" not in tags:
                tags.append("hide-input")
    nbformat.write(notebook, path)


def build_html(root: Path) -> Path:
    """jupyter-book build with warnings as errors; returns the HTML folder."""
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(root), "-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)
    return root / "_build" / "html"


def build_book(root: str | Path = ".", quick: bool = False, execute: bool = True) -> Path:
    root = Path(root).resolve()
    install_mathjax(root)
    if execute:
        execute_studies(root, quick)
    return build_html(root)
