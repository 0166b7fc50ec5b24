"""Type names shared by every layer."""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

PyTree = Any
Batch = dict[str, jax.Array]  # One (per-device) batch of named arrays.
Metrics = dict[str, jax.Array]  # Scalar metrics of one iteration.
# (faces x [N, S, S, c] in [-1, 1], target labels [N], intensities [N]) -> rendered faces like x.
Editor = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
# Faces [N, S, S, c] in [-1, 1] -> identity features [N, D].
FeatureFn = Callable[[np.ndarray], np.ndarray]
