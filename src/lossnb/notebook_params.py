"""Notebook parameters as papermill hands them over: `-y` gives YAML values, `-p` gives strings. A list or
mapping parameter given with -p arrives as its text, which is read as YAML here, or refused with what to
write instead."""
from __future__ import annotations

from typing import Any

import yaml


def as_list(value: Any, name: str) -> list:
    return _as(value, name, list, "[10, 100]")


def as_dict(value: Any, name: str) -> dict:
    return _as(value, name, dict, "{a: b}")


def _as(value: Any, name: str, kind: type, example: str) -> Any:
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            value = None
    if isinstance(value, (list, tuple)) and kind is list:
        return list(value)
    if isinstance(value, kind):
        return value
    raise ValueError(f"notebook parameter {name} must be a {kind.__name__}, got {value!r}; with papermill pass "
                     f"-y '{name}: {example}' (or -p {name} '{example}')")
