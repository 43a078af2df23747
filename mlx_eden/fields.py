"""The one helper every typed section of a recipe is declared with (recipe.py, evalspec.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any


def _f(default: Any, help: str, **kw):
    """A dataclass field with its help text next to it."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return field(default_factory=default, metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})
