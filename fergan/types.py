"""Type names shared by every layer."""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

PyTree = Any
Batch = dict[str, jax.Array]  # One (per-device) batch of named arrays.
Metrics = dict[str, jax.Array]  # Scalar metrics of one iteration.
# editor(faces x [N, S, S, c] in [-1, 1], target labels [N], intensities [N], landmarks=[N, 68, 2]
# (x, y) pixels of x, NaN where unknown) -> rendered faces like x. Callers always pass the
# landmarks (a method whose generator reads a landmark side image needs them); others ignore them.
Editor = Callable[..., np.ndarray]
# Faces [N, S, S, c] in [-1, 1] -> identity features [N, D].
FeatureFn = Callable[[np.ndarray], np.ndarray]


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or Inf; training stopped before saving that state. Here, not in the
    training loop's module, so the CLI names it as bad input without importing that loop."""
