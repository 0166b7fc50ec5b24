"""Atomic file writes: a reader (TensorBoard, a notebook, a resumed run) never sees half a file.

Every writer here produces its output under a temporary name in the target folder and renames
it onto the target, which is atomic on one filesystem. This module depends on nothing else in
fergan, so every layer can use it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

_TMP_PREFIX = ".tmp-"  # Temporary names start with it (hidden, and easy to spot if left over).


def _tmp_path(path: str) -> str:
    """A unique temporary name beside `path` that ends with `path`'s own name.

    Keeping the name (and so the suffix) matters: matplotlib and PIL infer the format from it,
    and np.savez appends `.npz` to names without it.
    """
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.join(folder, f"{_TMP_PREFIX}{uuid.uuid4().hex}-{os.path.basename(path)}")


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Calls `write(tmp_path)` to produce the file under a temporary name, then renames it.

    The folder of `path` is created when missing. The temporary file is created by `write`
    (so it gets the usual umask-derived permissions, not mkstemp's owner-only ones). If `write`
    raises, the temporary file is removed and `path` is left as it was.
    """
    tmp = _tmp_path(path)
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, payload: Any) -> None:
    """Writes `payload` as JSON (indent 2, sorted keys; NaN written as NaN), atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)

    atomic_write(path, write)


def save_npz(path: str, **arrays: np.ndarray) -> None:
    """Writes `arrays` to an uncompressed `.npz` at `path` (np.savez), atomically.

    The archive is written through an open file, so no `.npz` is appended to `path`.
    """

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)
