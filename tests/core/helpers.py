"""Small configs, states and batches for core tests (size 32, narrow networks)."""

import functools

import jax
import numpy as np

from configs.default import get_config
from fergan.data import noise_batch
from fergan.methods.fesr import step as step_lib
from fergan.methods.fesr.hparams import make_hparams
from fergan.methods.fesr.networks import build_networks
from fergan.methods.fesr.state import init_state
from fergan.training import cpu_workarounds
from fergan.training.parallel import data_parallel_step


def tiny_config(variant="FESR_JL", batch_size=8, pre_epochs=1, max_epochs=4, seed=0):
    config = get_config()
    config.seed = seed
    config.variant = variant
    config.model.image_size = 32
    config.model.width = 0.125
    config.model.num_classes = 4
    config.train.batch_size = batch_size
    config.train.pre_epochs = pre_epochs
    config.train.max_epochs = max_epochs
    return config


def networks(config):
    return build_networks(config.model, recognizer_trunk=config.recognizer.trunk)


def setup(config, steps_per_epoch=2):
    nets = networks(config)
    hp = make_hparams(config, steps_per_epoch)
    state = init_state(nets, config.seed, hp.b1, hp.b2)
    return nets, hp, state


def random_batch(config, seed=0):
    return noise_batch.random_batch(config, np.random.default_rng(seed))


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
