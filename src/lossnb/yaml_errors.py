"""A YAML parse error in one line, for the one-line errors of the command line (PyYAML's own message spans
several lines, with the offending text and a caret)."""
from __future__ import annotations

import yaml


def one_line(err: yaml.YAMLError) -> str:
    """'line 2, column 8: expected ',' or ']', but got '<stream end>'' (lines and columns from 1)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem
