"""Training-iteration benchmark: `python -m fergan.benchmarks.step --config configs/<name>.py`.

Builds the configured method's model (the paper's size by default), compiles the data-parallel
step,
runs a warm-up and then `--steps` iterations in stage 1 and in stage 2 on a fixed random batch,
and prints one JSON line per stage. FLOPs come from XLA's cost analysis of the compiled step.
"""

import functools
import json
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from fergan import determinism, methods
from fergan.config_utils import editable_copy
from fergan.data.noise_batch import random_batch
from fergan.training import cpu_workarounds, replicas
from fergan.training.parallel import data_parallel_step, select_devices

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed iterations per stage.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed iterations per stage after compilation.")
_STAGES = flags.DEFINE_list("stages", ["1", "2"], "Stages to time.")

# Stage boundary of the benchmark's schedule: far enough that stage 1 never reaches it.
_PRE_STEPS = 1_000_000


def peak_bytes(compiled) -> int:
    """Device peak memory when the backend reports it, else XLA's compiled-buffer estimate."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"])
    mem = compiled.memory_analysis()
    return int(getattr(mem, "peak_memory_in_bytes", 0)) or int(
        mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
    )


def benchmark(config, steps: int, warmup: int, stages=(1, 2)) -> list[dict]:
    """Time the training iteration per stage; returns one result dict per stage."""
    method = methods.of(config)
    # One "epoch" per step, so P_pre / P_max in epochs map to the benchmark's stage boundary.
    config = editable_copy(config)
    config.train.pre_epochs = _PRE_STEPS
    config.train.max_epochs = 2 * _PRE_STEPS
    model = method.build(config, 1)
    devices = select_devices(config.train.num_devices, config.train.batch_size)
    num_replicas = int(config.num_replicas)
    make_runner = lambda body: data_parallel_step(
        body,
        devices,
        config.train.parallel,
        num_replicas=num_replicas if num_replicas > 1 else 0,
        vmap_replicas=cpu_workarounds.vmap_replicas(
            config.get("replica_batching", "auto"), jax.default_backend()
        ),
    )
    iterations = method.iterations(model)
    runner = make_runner(iterations[0][2])
    batch = runner.place_batch(
        random_batch(config, np.random.default_rng(0), method.features(config))
    )
    init = functools.partial(method.init_state, model)
    if num_replicas > 1:  # S seeds in one program, all on the same (shared) batch.
        host_state = replicas.init_replicas(init, range(num_replicas))
    else:
        host_state = init(config.seed)
    results = []
    # Stage 2 starts where the method's first stage ends (a one-stage method times stage 1).
    stages = [s for s in stages if s == 1 or 0 < model.pre_steps < model.total_steps]
    for stage in stages:
        first = 0 if stage == 1 else model.pre_steps
        # The iteration the training loop runs at that step.
        body = next(b for start, end, b in iterations if start <= first < end)
        runner = make_runner(body)
        state = runner.place_state(host_state.replace(step=np.asarray(first, np.int32)))
        start = time.perf_counter()
        compiled = runner.lower(state, batch).compile()
        compile_s = time.perf_counter() - start
        flops = float((compiled.cost_analysis() or {}).get("flops", 0.0))
        for _ in range(warmup):
            state, metrics = runner(state, batch)
        jax.block_until_ready(state)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            state, metrics = runner(state, batch)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - start)
        median = float(np.median(times))
        results.append(
            {
                "stage": stage,
                "method": method.name,
                "variant": config.variant,
                "batch": config.train.batch_size,
                "image_size": config.model.image_size,
                "width": config.model.width,
                "devices": len(devices),
                "parallel": config.train.parallel,
                "compile_s": round(compile_s, 2),
                "step_ms_median": round(1e3 * median, 2),
                "replicas": num_replicas,
                "images_per_s": round(num_replicas * config.train.batch_size / median, 2),
                "peak_bytes": peak_bytes(compiled),
                "flops_per_step": flops,
                "achieved_flops_per_s": flops / median,
                "backend": jax.default_backend(),
            }
        )
    return results


def main(argv):
    del argv
    determinism.configure(False, _CONFIG.value.determinism.cpu_isa)  # Before JAX starts.
    stages = tuple(int(s) for s in _STAGES.value)
    for result in benchmark(_CONFIG.value, _STEPS.value, _WARMUP.value, stages):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
