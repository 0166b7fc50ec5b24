"""What a per-device step body uses to stay independent of the device split: the mean over the
data axis, and each sample's position in the global batch (the key of its per-sample noise)."""

import jax
import jax.numpy as jnp
from jax import lax

from fergan.types import Batch, PyTree


def pmean(tree: PyTree, axis_name: str | None) -> PyTree:
    """lax.pmean over `axis_name`; the tree itself on one device (None)."""
    return tree if axis_name is None else lax.pmean(tree, axis_name)


def sample_indices(batch: Batch, axis_name: str | None) -> jax.Array:
    """int [b]: the global-batch positions of this device's b samples: the pipeline's `slot`,
    else rows in global-batch order (device i holds rows [i b, (i + 1) b))."""
    if "slot" in batch:
        return batch["slot"]
    b = batch["x"].shape[0]
    first = 0 if axis_name is None else lax.axis_index(axis_name) * b
    return first + jnp.arange(b)
