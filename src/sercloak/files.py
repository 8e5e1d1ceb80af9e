"""Writing files so that an interrupted job never leaves half of one (no torch here: the
torch-free client writes through it too).

Every file a job makes (features, models, cloaks, scores, results) is written
through `atomic_write`: into a temporary file beside it, then renamed into
place. A reader, a resumed run or another worker of a distributed run
(`experiment.executors`) therefore sees either the whole file or none, and a
unit of work whose outputs exist is finished. The temporary name carries the
process id, so two workers racing to write the same file never write into each
other's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary path beside `path` (same suffix, so NumPy and torch
    keep it), then rename it into place; the folder is made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: Path | str, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path | str, thing, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(thing, indent=indent))
