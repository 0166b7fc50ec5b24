"""The tiny core-test config and its noise batches, without the training stack (what
tests/launch/isa_driver.py needs in its fresh processes; tests.core.helpers builds on it)."""

import numpy as np

from configs.default import get_config
from fergan.data import noise_batch


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


def random_batch(config, seed=0):
    return noise_batch.random_batch(config, np.random.default_rng(seed))
