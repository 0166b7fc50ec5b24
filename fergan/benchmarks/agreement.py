"""How far apart runs that should agree end:
`python -m fergan.benchmarks.agreement [--steps N]`.

Trains the tiny config (32 px, width 0.125, batch 8, FESR_JL) for a few steps on fixed noise
batches in several ways and prints, for each pair that docs/reproducibility.md lists, one JSON
line: bit-identical or not, the largest |a - b| over the parameters and the largest difference
in ULPs (fergan.tools.compare_runs). Runs on 4 simulated CPU devices; takes minutes on 2 cores.
"""

import functools
import json

import jax
from absl import app, flags

from configs import default
from fergan import methods
from fergan.data.noise_batch import random_batch
from fergan.tools import compare_runs
from fergan.training.parallel import data_parallel_step, select_devices
from fergan.training.replicas import init_replicas, replica

_STEPS = flags.DEFINE_integer("steps", 3, "Training steps of each run (stage 1, then stage 2).")
SEEDS = (0, 1)


def tiny_config(seed: int = 0):
    config = default.get_config()
    config.seed = seed
    config.model.image_size = 32
    config.model.width = 0.125
    config.train.batch_size = 8
    config.train.pre_epochs = 1
    config.train.max_epochs = 3
    return config


def train(steps: int, mode: str = "shard_map", num_devices: int = 4, seed: int = 0,
          replicas: tuple[int, ...] = ()):  # fmt: skip
    """The state after `steps` steps on batches drawn from numpy seeds 0, 1, ...; with
    `replicas`, one program trains a run per seed in it, all on those batches."""
    import numpy as np

    config = tiny_config(seed)
    method = methods.of(config)
    model = method.build(config, 1)
    devices = select_devices(num_devices, config.train.batch_size)
    step = functools.partial(method.train_step, model)
    runner = data_parallel_step(step, devices, mode, num_replicas=len(replicas))
    init = functools.partial(method.init_state, model)
    state = runner.place_state(init_replicas(init, replicas) if replicas else init(seed))
    for i in range(steps):
        batch = random_batch(config, np.random.default_rng(i))
        state, _ = runner(state, runner.place_batch(batch))
    return runner.host_state(state)


def params(state) -> dict:
    """Every network's parameters as a plain dict of arrays."""
    return jax.device_get(methods.get("fesr").parameters(state))


def row(name: str, a, b) -> dict:
    part = compare_runs.compare_part(params(a), params(b), params_prefix="")
    return {"pair": name, "identical": part["identical"], "max_abs_diff": part["max_abs_diff"],
            "max_ulp": part["max_ulp"]}  # fmt: skip


def main(argv):
    del argv
    steps = _STEPS.value
    base = train(steps)
    rows = [
        row("same program twice", base, train(steps)),
        row("1 vs 4 devices", train(steps, num_devices=1), base),
        row("pmap vs shard_map", train(steps, mode="pmap"), base),
    ]
    replicated = train(steps, replicas=SEEDS)
    for i, seed in enumerate(SEEDS):
        single = base if seed == 0 else train(steps, seed=seed)
        rows.append(row(f"replica {i} vs single run (seed {seed})", replica(replicated, i), single))
    for r in rows:
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    jax.config.update("jax_num_cpu_devices", 4)
    app.run(main)
