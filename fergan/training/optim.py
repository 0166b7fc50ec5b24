"""A network's parameters with their Adam state, and one Adam step at a rate given per iteration.

The rate is applied by hand because a method's schedule is a function of the shared iteration
counter t, while optax's own count advances only on the updates a network makes (FESR's R makes
none in stage 1; LSSL's D makes n_critic per iteration).
"""

import flax.struct
import jax
import jax.numpy as jnp
import optax

from fergan.types import PyTree


@flax.struct.dataclass
class NetState:
    """Parameters of one network and its own Adam state."""

    params: PyTree
    opt_state: PyTree


def adam(b1: float, b2: float) -> optax.GradientTransformation:
    """Adam without a learning rate (`adam_step` multiplies its update by the rate)."""
    return optax.scale_by_adam(b1=b1, b2=b2)


def init_net(params: PyTree, b1: float, b2: float) -> NetState:
    """`params` with a fresh Adam state."""
    return NetState(params=params, opt_state=adam(b1, b2).init(params))


def adam_step(net: NetState, grads: PyTree, lr: jax.Array, b1: float, b2: float) -> NetState:
    """One Adam update of `net` with `grads` (already reduced over devices) at rate `lr`."""
    updates, opt_state = adam(b1, b2).update(grads, net.opt_state, net.params)
    params = jax.tree.map(lambda p, u: p - lr * u, net.params, updates)
    return NetState(params=params, opt_state=opt_state)


def linear_decay(rate: float, step: jax.Array, end: int, decay_steps: int) -> jax.Array:
    """`rate` until `decay_steps` iterations before `end`, then linearly to 0 at `end`; `step`
    is the scalar int iteration counter."""
    remaining = (end - step).astype(jnp.float32)
    return rate * jnp.clip(remaining / decay_steps, 0.0, 1.0)
