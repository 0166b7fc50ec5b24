"""Applying a jitted function to a whole array in fixed-size batches.

A jitted function compiles once per input shape; feeding it batches of one size (the last one
padded) keeps it at one compile however many examples there are. This module depends on nothing
else in fergan, so every layer can use it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np


def _pad_rows(part: np.ndarray, pad: int) -> np.ndarray:
    """[n, ...] -> [n + pad, ...] by repeating the last row (a real example, so no NaN or
    degenerate input reaches `fn`)."""
    return np.concatenate([part, np.repeat(part[-1:], pad, 0)])


def batched_apply(fn: Callable, *arrays: np.ndarray, batch: int = 32):
    """Applies `fn` to [N, ...] arrays sliced alike into batches of exactly `batch` rows.

    The last batch is padded by repeating its last row, and the outputs of the padding are
    dropped, so `fn` must treat rows independently (no batch statistics).

    Args:
      fn: maps `batch`-row slices of every array to an output [batch, ...], or to a pytree
        (e.g. a dict) of such outputs.
      *arrays: one or more arrays with the same leading size N.
      batch: rows per call of `fn`.

    Returns:
      [N, ...] the outputs concatenated in order, as numpy (a pytree of them when `fn` returns
      one). For N == 0 nothing is computed:
      `fn` is only traced (jax.eval_shape) on `batch`-row inputs, and the result is an empty
      [0, ...] array with the trailing shape and dtype `fn` would give.

    Raises:
      ValueError: no arrays, or arrays whose leading sizes differ.
    """
    if not arrays:
        raise ValueError("batched_apply needs at least one array.")
    sizes = {len(a) for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"batched_apply: arrays have different leading sizes {sorted(sizes)}.")
    if sizes == {0}:
        return _empty_output(fn, arrays, batch)
    outs = []
    for start in range(0, len(arrays[0]), batch):
        parts = [a[start : start + batch] for a in arrays]
        pad = batch - len(parts[0])
        if pad:
            parts = [_pad_rows(p, pad) for p in parts]
        kept = batch - pad
        outs.append(jax.tree.map(lambda o, k=kept: np.asarray(o)[:k], jax.device_get(fn(*parts))))
    return jax.tree.map(lambda *pieces: np.concatenate(pieces), *outs)


def _empty_output(fn: Callable, arrays: tuple[np.ndarray, ...], batch: int):
    """[0, ...] with the trailing shape and dtype of `fn`'s output, found without running it."""
    specs = [jax.ShapeDtypeStruct((batch, *a.shape[1:]), a.dtype) for a in arrays]
    return jax.tree.map(
        lambda out: np.zeros((0, *out.shape[1:]), out.dtype), jax.eval_shape(fn, *specs)
    )
