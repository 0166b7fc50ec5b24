"""Subprocess for test_determinism: apply `determinism.cpu_isa` (argv[2], '' = none) before JAX
starts, train the tiny generator's encoder a few Adam steps, save its parameters to argv[1]
(.npz) and print the determinism settings in force as one JSON line."""

import json
import os
import sys

from fergan import determinism

STEPS = 3


def train_encoder():
    """A few Adam steps of G's encoder towards fixed codes (convolutions, normalization, a
    dense layer): enough float arithmetic for the ISA to show in the last bits, and quick to
    compile."""
    import jax
    import jax.numpy as jnp
    import optax

    from fergan.models.generator import Genc
    from tests.core.small import random_batch, tiny_config  # Not the training stack.

    config = tiny_config()
    encoder = Genc(config.model.image_size, config.model.width, config.model.latent_dim)
    x = random_batch(config)["x"]
    params = encoder.init(jax.random.PRNGKey(0), x)
    target = jax.random.normal(jax.random.PRNGKey(1), (x.shape[0], config.model.latent_dim))
    tx = optax.adam(1e-3)

    def loss(p):
        return jnp.mean((encoder.apply(p, x) - target) ** 2)

    @jax.jit
    def step(p, opt):
        updates, opt = tx.update(jax.grad(loss)(p), opt)
        return optax.apply_updates(p, updates), opt

    opt = tx.init(params)
    for _ in range(STEPS):
        params, opt = step(params, opt)
    return {"/".join(k.key for k in path): v for path, v in jax.tree.leaves_with_path(params)}


def main(out_path: str, cpu_isa: str) -> None:
    determinism.configure(False, cpu_isa)
    import numpy as np

    np.savez(out_path, **train_encoder())
    settings = determinism.settings_in_force(os.environ.get("XLA_FLAGS", ""))
    print(json.dumps(settings), flush=True)


if __name__ == "__main__":  # python -m tests.launch.isa_driver OUT.npz CPU_ISA
    main(sys.argv[1], sys.argv[2])
