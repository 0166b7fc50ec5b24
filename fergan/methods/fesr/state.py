"""FESR's training state: every network's parameters and optimizer state, the step and the base
key."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from fergan.methods.fesr.networks import Networks
from fergan.models import LightCNN29, to_lightcnn_input
from fergan.training.optim import NetState, init_net

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Everything a run carries from one iteration to the next.

    `identity` holds the frozen LightCNN-29 parameters: no optimizer ever sees them (SPEC).
    `r.params` is R's head, or {"trunk", "head"} when R fine-tunes its own copy of the LightCNN
    trunk (`Networks.finetune_trunk`); read it through `r_trunk_params` / `r_head_params`.
    `rng` is the base key from the config seed; iteration t uses fold_in(rng, t).
    """

    step: jax.Array
    rng: jax.Array
    g: NetState
    dimg: NetState
    dz: NetState
    r: NetState
    identity: PyTree


def trunk_params(nets: Networks, identity: PyTree) -> PyTree:
    """The part of the identity network's parameters that `LightCNN29.trunk` reads (conv1..group2),
    found from the tree an init of the trunk alone builds (shapes only, nothing computed)."""
    x = jnp.zeros((1, nets.image_size, nets.image_size, 1))
    init = lambda: nets.identity.init(jax.random.PRNGKey(0), x, method=LightCNN29.trunk)
    return {name: identity[name] for name in jax.eval_shape(init)["params"]}


def r_trunk_params(nets: Networks, r_params: PyTree, identity: PyTree) -> PyTree:
    """Parameters R's trunk runs with: its own trained copy, or the frozen identity network's."""
    return r_params["trunk"] if nets.finetune_trunk else identity


def r_head_params(nets: Networks, r_params: PyTree) -> PyTree:
    """Parameters of R's head (`RecognizerHead`) within R's parameters."""
    return r_params["head"] if nets.finetune_trunk else r_params


def recognizer_trunk(nets: Networks, trunk: PyTree, x: jax.Array) -> jax.Array:
    """LightCNN conv1..pool3 with parameters `trunk` (see `r_trunk_params`) on images [B, S, S, c]
    in [-1, 1] -> [B, S/8, S/8, 192*width], R's trunk output."""
    return nets.identity.apply({"params": trunk}, to_lightcnn_input(x), method=LightCNN29.trunk)


def init_state(
    nets: Networks, seed: int, b1: float, b2: float, identity_params: PyTree | None = None
) -> TrainState:
    """Fresh parameters for every network, all drawn from keys derived from `seed`."""
    size, c = nets.image_size, nets.channels
    x = jnp.zeros((1, size, size, c), jnp.float32)
    k_g, k_dimg, k_dz, k_r, k_id, k_run = jax.random.split(jax.random.PRNGKey(seed), 6)
    net = lambda params: init_net(params, b1, b2)

    if identity_params is None:
        identity_params = nets.identity.init(
            k_id, jnp.zeros((1, size, size, 1)), method=LightCNN29.features
        )["params"]
    trunk = nets.identity.apply(
        {"params": identity_params}, jnp.zeros((1, size, size, 1)), method=LightCNN29.trunk
    )
    r_params = nets.recognizer.init(k_r, trunk)["params"]
    if nets.finetune_trunk:
        # A copy, not the identity network's own buffers: R's optimizer owns (and donates) it.
        own = jax.tree.map(jnp.array, trunk_params(nets, identity_params))
        r_params = {"trunk": own, "head": r_params}
    u = jnp.zeros((1, nets.num_classes), jnp.float32)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        rng=k_run,
        g=net(nets.generator.init(k_g, x, u)["params"]),
        dimg=net(nets.dimg.init(k_dimg, x)["params"]),
        dz=net(nets.dz.init(k_dz, jnp.zeros((1, nets.latent_dim)))["params"]),
        r=net(r_params),
        identity=identity_params,
    )
