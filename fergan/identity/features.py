"""F_id, the identity feature of faces (Eq. 12), and the LightCNN trunk's output, each computed in
one place."""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from fergan.batching import batched_apply
from fergan.models import LightCNN29, to_lightcnn_input

PyTree = Any

# Faces per call: every call has this many rows (the last padded), so it compiles once.
FEATURE_BATCH = 64


@functools.partial(jax.jit, static_argnums=(0, 1))
def _lightcnn_apply(model: LightCNN29, method: str, params: PyTree, faces: jax.Array) -> jax.Array:
    """[B, S, S, c] faces in [-1, 1] -> LightCNN29.<method> of them, the input conversion jitted
    too ('identity_feature': F_id [B, 256*width]; 'trunk': [B, S/8, S/8, 192*width])."""
    lightcnn_input = to_lightcnn_input(faces)
    return model.apply({"params": params}, lightcnn_input, method=getattr(LightCNN29, method))


def identity_features(
    model: LightCNN29, params: PyTree, x: np.ndarray, batch: int = FEATURE_BATCH
) -> np.ndarray:
    """F_id of faces.

    Args:
      model: the LightCNN29 definition (width, version, dtype).
      params: its parameter tree (with or without `fc2`).
      x: [N, S, S, c] faces in [-1, 1], c = 1 or 3 (RGB is reduced to luminance).
      batch: faces per jitted call.

    Returns:
      [N, 256*width] float32 features ([0, 256*width] when N == 0).
    """
    apply = functools.partial(_lightcnn_apply, model, "identity_feature", params)
    return batched_apply(apply, np.asarray(x), batch=batch)


def trunk_outputs(
    model: LightCNN29, params: PyTree, x: np.ndarray, batch: int = FEATURE_BATCH
) -> np.ndarray:
    """The LightCNN trunk (conv1..pool3, what R's head reads) on faces.

    Args: as `identity_features`.

    Returns:
      [N, S/8, S/8, 192*width] float32.
    """
    apply = functools.partial(_lightcnn_apply, model, "trunk", params)
    return batched_apply(apply, np.asarray(x), batch=batch)
