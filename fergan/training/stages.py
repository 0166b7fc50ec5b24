"""One iteration of a method whose stages are a function of the step (`Method.stage_starts`):
the loop compiles one iteration per stage, and each logs the keys of every stage."""

from collections.abc import Callable, Sequence
from typing import TypeVar

import jax
import jax.numpy as jnp

from fergan.types import Metrics

State = TypeVar("State")
Update = Callable[[State], tuple[State, Metrics]]


def run_stage(updates: Sequence[Update | None], stage: int, state: State) -> tuple[State, Metrics]:
    """`updates[stage](state)`, its metrics joined by zeros for the keys of the other stages
    (None: a stage the run does not have) and `stage` (1-based), so that a logging window across
    a boundary averages one structure. The other stages are traced for their shapes only."""
    zeros = {}
    for i, update in enumerate(updates):
        if i != stage and update is not None:
            shapes = jax.eval_shape(update, state)[1]
            zeros |= {k: jnp.zeros(a.shape, a.dtype) for k, a in shapes.items()}
    state, metrics = updates[stage](state)
    return state, zeros | metrics | {"stage": jnp.float32(stage + 1)}
