"""The identity network a run's config describes, built without the training package.

The identity package sits below training and the methods, so it builds its own LightCNN29 from
the config rather than taking it from the run's `Networks`.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from fergan.models import LightCNN29

# model.compute_dtype -> layer dtype; parameters stay float32 in either case.
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(model: ml_collections.ConfigDict):
    """The layer dtype named by `model.compute_dtype` ('float32' when unset).

    Raises:
      ValueError: a name not in COMPUTE_DTYPES.
    """
    name = model.get("compute_dtype", "float32")
    if name not in COMPUTE_DTYPES:
        raise ValueError(
            f"model.compute_dtype={name!r} is unknown; allowed: {tuple(COMPUTE_DTYPES)}"
        )
    return COMPUTE_DTYPES[name]


def identity_network(config: ml_collections.ConfigDict) -> LightCNN29:
    """The run's frozen LightCNN-29: `model.width` channels, `model.lightcnn_classes` fc2 rows,
    layout `identity.version`, layers in `model.compute_dtype`.

    It reads [B, S, S, 1] images in [0, 1] (see `to_lightcnn_input`), S = `model.image_size`.
    """
    return LightCNN29(
        config.model.width,
        config.model.lightcnn_classes,
        version=config.identity.version,
        dtype=compute_dtype(config.model),
    )
