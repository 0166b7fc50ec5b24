"""Small configs, states and batches for core tests (size 32, narrow networks)."""

import functools

import jax

from fergan.methods.fesr import step as step_lib
from fergan.methods.fesr.hparams import make_hparams
from fergan.methods.fesr.networks import build_networks
from fergan.methods.fesr.state import init_state
from fergan.training import cpu_workarounds
from fergan.training.parallel import data_parallel_step
from tests.core.small import random_batch, tiny_config

__all__ = ["networks", "parallel_runner", "random_batch", "setup", "tiny_config"]


def networks(config):
    return build_networks(config.model, recognizer_trunk=config.recognizer.trunk)


def setup(config, steps_per_epoch=2):
    nets = networks(config)
    hp = make_hparams(config, steps_per_epoch)
    state = init_state(nets, config.seed, hp.b1, hp.b2)
    return nets, hp, state


def parallel_runner(nets, hp, devices, mode, config=None, **kwargs):
    """The data-parallel driver of FESR's step (replica batching resolved from `config`)."""
    batching = config.get("replica_batching", "auto") if config is not None else "auto"
    return data_parallel_step(
        functools.partial(step_lib.train_step, nets, hp),
        devices,
        mode,
        vmap_replicas=cpu_workarounds.vmap_replicas(batching, jax.default_backend()),
        **kwargs,
    )
