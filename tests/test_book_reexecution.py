"""Executing a chapter again on the same records leaves the checkout as it was: papermill's timestamps and
paths are dropped from the executed copy, its figures carry no date and no random ids, and its formatted tables
no random ids and no memory address."""
import nbformat
import papermill
import pytest

from lossnb.book import tidy_executed

FIGURE = """from lossnb.plotting.style import book_style
import matplotlib.pyplot as plt
book_style()
fig, ax = plt.subplots()
ax.plot([0, 1], [1, 0], label="a line")
ax.legend()
plt.show()
import pandas as pd
display(pd.DataFrame({"error": [1.1e-16]}, index=["cross-entropy"]).style.format("{:.1e}"))"""


@pytest.mark.slow
def test_a_chapter_executed_twice_is_the_same_file(tmp_path):
    source = tmp_path / "chapter.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                                               nbformat.v4.new_code_cell(FIGURE)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, source)
    copies = []
    for name in ("first.ipynb", "second.ipynb"):
        out = tmp_path / name
        papermill.execute_notebook(source, out, parameters={"x": 2}, kernel_name="python3", progress_bar=False)
        tidy_executed(out)
        copies.append(out.read_text())
    assert copies[0] == copies[1]
    assert "image/svg+xml" in copies[0] and "<dc:date>" not in copies[0]
    assert "1.1e-16" in copies[0] and "Styler at 0x" not in copies[0]
    assert str(tmp_path) not in copies[0]  # no folder of the machine that executed it
    injected = [c for c in nbformat.reads(copies[0], as_version=4).cells if "injected-parameters" in c.metadata.tags]
    assert injected and "hide-input" in injected[0].metadata.tags
