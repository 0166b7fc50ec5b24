"""Many seeds in one program: replica i of a replicated run equals the single run with seed i."""

import functools

import jax
import numpy as np
import pytest

from fergan.methods.fesr.hparams import make_hparams
from fergan.methods.fesr.networks import build_networks
from fergan.methods.fesr.state import init_state
from fergan.training.parallel import select_devices
from fergan.training.replicas import init_replicas
from tests.core.helpers import parallel_runner, random_batch, tiny_config

SEEDS = (0, 1)
STEPS = 2  # one stage-1 and one stage-2 iteration


def _runner(config, mode, **kwargs):
    nets = build_networks(config.model)
    hp = make_hparams(config, steps_per_epoch=1)
    devices = select_devices(2, config.train.batch_size)
    return nets, hp, parallel_runner(nets, hp, devices, mode, config, **kwargs)


def batches_of(config, data_seed):
    """The batches of the single run that draws its data with `data_seed`."""
    return [random_batch(config, seed=10 * data_seed + t) for t in range(STEPS)]


@functools.cache
def single_run(seed, data_seed, mode):
    """The single run seeded with `seed` on the batches of `data_seed`; shared by the cases
    here (the runner and hyperparameters do not depend on the seed)."""
    config = tiny_config(seed=seed, batch_size=4, pre_epochs=1, max_epochs=3)
    nets, hp, runner = _single_runner(mode)
    state = runner.place_state(init_state(nets, seed, hp.b1, hp.b2))
    for batch in batches_of(config, data_seed):
        state, metrics = runner(state, runner.place_batch(batch))
    return runner.host_state(state), jax.device_get(metrics)


@functools.cache
def _single_runner(mode):
    return _runner(tiny_config(batch_size=4, pre_epochs=1, max_epochs=3), mode)


@pytest.mark.parametrize(
    "per_replica_data,batching", [(True, "vmap"), (False, "vmap"), (True, "unroll")]
)
def test_replica_equals_single_run(per_replica_data, batching, mode="shard_map"):
    config = tiny_config(batch_size=4, pre_epochs=1, max_epochs=3)
    config.replica_batching = batching
    nets, hp, runner = _runner(config, mode, num_replicas=2, per_replica_data=per_replica_data)
    # Per-replica data: replica i sees the batches of a run seeded with i.
    batches = {s: batches_of(config, s) for s in SEEDS}
    init = functools.partial(init_state, nets, b1=hp.b1, b2=hp.b2)
    state = runner.place_state(init_replicas(lambda seed: init(seed), SEEDS))
    for t in range(STEPS):
        if per_replica_data:
            batch = jax.tree.map(lambda *xs: np.stack(xs), *[batches[s][t] for s in SEEDS])
        else:
            batch = batches[0][t]
        state, metrics = runner(state, runner.place_batch(batch))
    replicated = runner.host_state(state)
    assert int(replicated.step) == STEPS
    for i, seed in enumerate(SEEDS):
        own, own_metrics = single_run(seed, seed if per_replica_data else 0, mode)
        mine = jax.tree.map(lambda a, i=i: a[i], replicated.replace(step=None))
        leaves = zip(jax.tree.leaves(mine), jax.tree.leaves(own.replace(step=None)), strict=True)
        for a, b in leaves:
            # vmap batches the convolutions, so float sums associate differently; Adam turns a
            # rounding difference in a near-zero gradient into up to a fraction of one learning
            # rate step (a swapped seed or batch moves parameters by far more).
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=0.5 * hp.learning_rate)
        for name, value in own_metrics.items():
            np.testing.assert_allclose(metrics[name][i], value, rtol=1e-4, atol=1e-5, err_msg=name)
    # The replicas really are different runs.
    assert not np.allclose(replicated.g.params["enc"]["fc"]["kernel"][0],
                           replicated.g.params["enc"]["fc"]["kernel"][1])  # fmt: skip
