"""Small file helpers shared by the edge modules: JSON written atomically, read leniently."""

from __future__ import annotations

import json
import os
from typing import Any


def write_json(path: str | os.PathLike, obj: Any) -> str:
    """Writes `obj` as indented, key-sorted JSON; atomic (a temporary file, then a rename)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON in `path`, or `default` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default
