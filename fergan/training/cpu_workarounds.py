"""Choices that exist only because of XLA:CPU, each measured, in one place.

Both give the same numbers as the portable form; 'auto' picks the CPU form on CPU only. (The
other CPU workaround, the custom-VJP strided convolutions, lives with the layers it replaces:
`fergan.models.layers.conv4s2`.)
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax


def resolve_for_platform(key: str, value: str, on_cpu: str, elsewhere: str, platform: str) -> str:
    """A config choice among ('auto', on_cpu, elsewhere): 'auto' picks by backend platform."""
    allowed = ("auto", on_cpu, elsewhere)
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not one of {allowed}")
    if value != "auto":
        return value
    return on_cpu if platform == "cpu" else elsewhere


# CPU only, measured: XLA:CPU canonicalizes convolution layouts in the entry computation only, so
# a kernel gradient inside a lax.cond branch runs ~300x slower there than outside it.
def gate_by_select(gating: str, platform: str) -> bool:
    """Resolve `train.gating` ('auto', 'select', 'cond') for a platform ('cpu', 'gpu', 'tpu'):
    True = compute both branches and keep one with jnp.where."""
    return resolve_for_platform("train.gating", gating, "select", "cond", platform) == "select"


def branch(by_select: bool, pred, taken: Callable, fallback: Callable, *operands):
    """`taken(*operands)` if pred else `fallback(*operands)`, decided on device: lax.cond runs
    one branch; `by_select` (see `gate_by_select`) runs both and keeps one with jnp.where."""
    if by_select:
        chosen, other = taken(*operands), fallback(*operands)
        return jax.tree.map(lambda a, b: jnp.where(pred, a, b), chosen, other)
    return lax.cond(pred, taken, fallback, *operands)


# CPU only, measured: vmap over per-replica kernels makes grouped convolutions, ~3.5x slower on
# XLA:CPU than separate ones.
def vmap_replicas(batching: str, platform: str) -> bool:
    """Resolve `replica_batching` ('auto', 'unroll', 'vmap') for a platform: True = jax.vmap."""
    return resolve_for_platform("replica_batching", batching, "unroll", "vmap", platform) == "vmap"
