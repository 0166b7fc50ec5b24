"""Training state: every network's parameters and optimizer state, the step and the base key."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fergan.models import LightCNN29
from fergan.training.networks import Networks

PyTree = Any


@flax.struct.dataclass
class NetState:
    """Parameters of one network and its own Adam state."""

    params: PyTree
    opt_state: PyTree


@flax.struct.dataclass
class TrainState:
    """Everything a run carries from one iteration to the next.

    `identity` holds the frozen LightCNN-29 parameters: no optimizer ever sees them (SPEC).
    `rng` is the base key from the config seed; iteration t uses fold_in(rng, t).
    """

    step: jax.Array
    rng: jax.Array
    g: NetState
    dimg: NetState
    dz: NetState
    r: NetState
    identity: PyTree


def adam(b1: float, b2: float) -> optax.GradientTransformation:
    """Adam without a learning rate: the step applies the schedule itself (see step.py)."""
    return optax.scale_by_adam(b1=b1, b2=b2)


def init_state(
    nets: Networks, seed: int, b1: float, b2: float, identity_params: PyTree | None = None
) -> TrainState:
    """Fresh parameters for every network, all drawn from keys derived from `seed`."""
    size, c = nets.image_size, nets.channels
    x = jnp.zeros((1, size, size, c), jnp.float32)
    k_g, k_dimg, k_dz, k_r, k_id, k_run = jax.random.split(jax.random.PRNGKey(seed), 6)
    tx = adam(b1, b2)

    def net(params):
        return NetState(params=params, opt_state=tx.init(params))

    if identity_params is None:
        identity_params = nets.identity.init(
            k_id, jnp.zeros((1, size, size, 1)), method=LightCNN29.features
        )["params"]
    trunk = nets.identity.apply(
        {"params": identity_params}, jnp.zeros((1, size, size, 1)), method=LightCNN29.trunk
    )
    u = jnp.zeros((1, nets.num_classes), jnp.float32)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        rng=k_run,
        g=net(nets.generator.init(k_g, x, u)["params"]),
        dimg=net(nets.dimg.init(k_dimg, x)["params"]),
        dz=net(nets.dz.init(k_dz, jnp.zeros((1, nets.latent_dim)))["params"]),
        r=net(nets.recognizer.init(k_r, trunk)["params"]),
        identity=identity_params,
    )


def init_replicas(
    nets: Networks, seeds, b1: float, b2: float, identity_params: PyTree | None = None
) -> TrainState:
    """States of several runs stacked on a leading replica axis (all but the shared step).

    Replica i is exactly `init_state(nets, seeds[i], ...)`.
    """
    states = [jax.device_get(init_state(nets, s, b1, b2, identity_params)) for s in seeds]
    return stack_replicas(states)


def stack_replicas(states, xp=np) -> TrainState:
    """Single-run states -> one state with a leading replica axis; the step counter is shared.

    xp: np (host arrays) or jnp (inside a trace)."""
    shared = [s.replace(step=None) for s in states]
    stacked = jax.tree.map(lambda *leaves: xp.stack(leaves), *shared)
    return stacked.replace(step=states[0].step)


def replica(state: TrainState, index: int) -> TrainState:
    """Replica `index` of a replicated state, as a plain single-run state."""
    return jax.tree.map(lambda a: a[index], state.replace(step=None)).replace(step=state.step)
