"""The cloak file on disk, read and written without torch (NumPy arrays + a JSON header).

One `.npz` holding the cloak's arrays and a `meta` entry (JSON: format,
cloak and feature settings, training history), read with
``allow_pickle=False``. `cloak.noise.Cloak` saves and loads it as a torch
module; the torch-free client (`serving.client`) reads the same file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .files import atomic_write

CLOAK_FORMAT = "sercloak.cloak/1"


def write(path: Path | str, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (`files.atomic_write`)."""
    atomic_write(path, lambda tmp: np.savez(
        tmp, meta=np.array(json.dumps({"format": CLOAK_FORMAT, **meta})), **arrays))


def read(path: Path | str) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a cloak file, or ValueError naming the file and the problem."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays.pop("meta")))
    except Exception as err:
        raise ValueError(f"{path}: not a readable cloak file ({err})") from err
    if meta.get("format") != CLOAK_FORMAT:
        raise ValueError(f"{path}: not a {CLOAK_FORMAT} file")
    return meta, arrays
