"""Replicas: S independent runs (seeds seed, seed + 1, ...) trained together in one program.

A replicated state is a method's state whose leaves carry a leading replica axis S, except the
scalar `step`, which the replicas share (so a stage test stays a real branch, not a select).
Nothing here knows a method: it needs only a state with a `step` field and a step body.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fergan.config_utils import editable_copy
from fergan.data import pipeline


def replica_seeds(config: ml_collections.ConfigDict) -> list[int]:
    """Seeds of the `num_replicas` runs trained together: seed, seed + 1, ..."""
    return [int(config.seed) + i for i in range(int(config.num_replicas))]


def stack_replicas(states, xp=np):
    """Single-run states -> one state with a leading replica axis; the step counter is shared.

    xp: np (host arrays) or jnp (inside a trace)."""
    shared = [s.replace(step=None) for s in states]
    stacked = jax.tree.map(lambda *leaves: xp.stack(leaves), *shared)
    return stacked.replace(step=states[0].step)


def init_replicas(init_state: Callable[[int], object], seeds) -> object:
    """`init_state(seed)` for every seed, stacked (replica i is exactly `init_state(seeds[i])`)."""
    return stack_replicas([jax.device_get(init_state(s)) for s in seeds])


def replica(state, index: int):
    """Replica `index` of a replicated state, as a plain single-run state."""
    return jax.tree.map(lambda a: a[index], state.replace(step=None)).replace(step=state.step)


def num_replicas(state) -> int:
    """S of a replicated state (the leading axis of its leaves other than `step`)."""
    return jax.tree.leaves(state.replace(step=None))[0].shape[0]


def replica_axes(state):
    """vmap axes of a replicated state: 0 on every leaf except the shared step counter."""
    return jax.tree.map(lambda _: 0, state).replace(step=None)


def replicated_step(
    step: Callable, state, batch, per_replica_data: bool = False, use_vmap: bool = True
):
    """S independent runs of `step(state, batch) -> (state, metrics)` in one program.

    batch: [S, B, ...] per replica with `per_replica_data`, else one [B, ...] batch shared by all
    replicas. Metrics come back with shape [S]. `use_vmap`: jax.vmap over the replica axis, else
    S unrolled copies of the step (`cpu_workarounds.vmap_replicas`); both give the same numbers.
    """
    if use_vmap:
        axes = replica_axes(state)
        in_axes = (axes, 0 if per_replica_data else None)
        return jax.vmap(step, in_axes=in_axes, out_axes=(axes, 0))(state, batch)

    def own_batch(i):
        return jax.tree.map(lambda a: a[i], batch) if per_replica_data else batch

    outs = [step(replica(state, i), own_batch(i)) for i in range(num_replicas(state))]
    states, metrics = zip(*outs, strict=True)
    return stack_replicas(states, jnp), jax.tree.map(lambda *m: jnp.stack(m), *metrics)


class ReplicaIterators:
    """One data iterator per replica (seeded like that replica's own run), batches stacked to
    [S, B, ...]; its state is the list of the iterators' states."""

    def __init__(self, iterators):
        self.iterators = iterators

    def __next__(self):
        batches = [next(it) for it in self.iterators]
        return {k: np.stack([b[k] for b in batches]) for k in batches[0]}

    def get_state(self) -> dict:
        return {"replicas": [it.get_state() for it in self.iterators]}

    def set_state(self, state: dict) -> None:
        for it, s in zip(self.iterators, state["replicas"], strict=True):
            it.set_state(s)


def make_iterator(config: ml_collections.ConfigDict, datasets, features: tuple[str, ...] = ()):
    """The run's training iterator: one stream, or one per replica (`replica_data`); `features`
    adds the method's optional batch features (`pipeline.BATCH_FEATURES`) to each example."""
    kwargs = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "features": tuple(features),
    }
    if config.num_replicas > 1 and config.replica_data == "per_replica":
        iterators = []
        for seed in replica_seeds(config):
            own = editable_copy(config)
            own.seed = seed
            iterators.append(pipeline.make_train_iterator(own, datasets, **kwargs))
        return ReplicaIterators(iterators)
    return pipeline.make_train_iterator(config, datasets, **kwargs)
