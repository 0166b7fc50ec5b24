"""Data-parallel drivers for the per-device step: `jax.shard_map` inside `jax.jit` (default) and
`jax.pmap`. Both run the same body, which reduces over the named axis `DATA_AXIS`."""

import functools
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fergan.training.hparams import StepHParams
from fergan.training.networks import Networks
from fergan.training.state import TrainState
from fergan.training.step import Batch, Metrics, train_step

DATA_AXIS = "data"
PARALLEL_MODES = ("shard_map", "pmap")


def select_devices(num_devices: int, global_batch: int) -> list[jax.Device]:
    """The first `num_devices` devices (0 = all), checking the batch splits evenly over them."""
    devices = jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(
                f"train.num_devices={num_devices} but only {len(devices)} devices are available"
            )
        devices = devices[:num_devices]
    if global_batch % len(devices):
        raise ValueError(
            f"train.batch_size={global_batch} is not divisible by the device count {len(devices)}"
        )
    return devices


class DataParallelStep:
    """Holds one compiled data-parallel step and knows how to place state and batches for it.

    `place_state` / `place_batch` put host arrays where the step wants them; `__call__(state,
    batch) -> (state, metrics)` donates the state buffers; `host_state` returns a plain copy of
    the state (un-replicated) for checkpoints and comparisons.
    """

    def __init__(self, nets: Networks, hp: StepHParams, devices: list[jax.Device], mode: str):
        if mode not in PARALLEL_MODES:
            raise ValueError(f"train.parallel={mode!r} is unknown; allowed: {PARALLEL_MODES}")
        self.mode = mode
        self.devices = devices
        body = functools.partial(train_step, nets, hp, axis_name=DATA_AXIS)
        if mode == "pmap":
            self._step = jax.pmap(body, axis_name=DATA_AXIS, devices=devices, donate_argnums=0)
        else:
            self.mesh = Mesh(np.asarray(devices), (DATA_AXIS,))
            self._replicated = NamedSharding(self.mesh, P())
            self._sharded = NamedSharding(self.mesh, P(DATA_AXIS))
            # Outputs are replicated by construction (every update uses pmean-reduced gradients);
            # the varying-axis type check is off because the stage branches build their skipped
            # outputs as plain zeros.
            mapped = jax.shard_map(
                body,
                mesh=self.mesh,
                in_specs=(P(), P(DATA_AXIS)),
                out_specs=(P(), P()),
                check_vma=False,
            )
            self._step = jax.jit(mapped, donate_argnums=0)

    def place_state(self, state: TrainState) -> TrainState:
        if self.mode == "pmap":
            # pmap shards a leading device axis itself.
            n = len(self.devices)
            return jax.tree.map(lambda a: np.broadcast_to(a, (n, *np.shape(a))), state)
        return jax.device_put(state, self._replicated)

    def place_batch(self, batch: Batch) -> Batch:
        if self.mode == "pmap":
            n = len(self.devices)
            return jax.tree.map(lambda a: np.reshape(a, (n, -1, *a.shape[1:])), batch)
        return jax.device_put(batch, self._sharded)

    def host_state(self, state: TrainState) -> TrainState:
        if self.mode == "pmap":
            state = jax.tree.map(lambda a: a[0], state)
        return jax.device_get(state)

    def __call__(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        state, metrics = self._step(state, batch)
        if self.mode == "pmap":
            metrics = jax.tree.map(lambda a: a[0], metrics)
        return state, metrics

    def lower(self, state: TrainState, batch: Batch):
        """The lowered step (for XLA cost analysis in the benchmark)."""
        return self._step.lower(state, batch)


def make_step(
    nets: Networks, hp: StepHParams, devices: list[jax.Device], mode: str = "shard_map"
) -> Callable:
    """Convenience constructor; see DataParallelStep."""
    return DataParallelStep(nets, hp, devices, mode)
