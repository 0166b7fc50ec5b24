"""bfloat16 compute: losses within a stated tolerance of float32 on a fixed batch."""

import functools

import jax
import numpy as np
import pytest

from fergan.methods.fesr import step as step_lib
from tests.core.helpers import random_batch, setup, tiny_config

# bfloat16 keeps 8 mantissa bits (~0.4% per rounding); through ~40 layers the losses of one
# iteration stay within 5% (relative) of float32, or 0.05 absolute for terms near zero.
RTOL, ATOL = 0.05, 0.05


def first_iteration_metrics(compute_dtype, at_stage2):
    # Batch 4 at one step per epoch: in float32, the program of tests/core/test_step.py's
    # FESR_JL iterations (compiled once for both).
    config = tiny_config(batch_size=4)
    config.model.compute_dtype = compute_dtype
    nets, hp, state = setup(config, steps_per_epoch=1)
    if at_stage2:
        state = state.replace(step=jax.numpy.asarray(hp.pre_steps, jax.numpy.int32))
    new, metrics = jax.jit(functools.partial(step_lib.train_step, nets, hp))(
        state, random_batch(config)
    )
    for leaf in jax.tree.leaves(new.g.params):
        assert leaf.dtype == np.float32  # parameters stay float32
    return jax.device_get(metrics)


def test_bfloat16_losses_match_float32():
    # A stage-2 iteration runs every network and every loss term.
    f32 = first_iteration_metrics("float32", at_stage2=True)
    bf16 = first_iteration_metrics("bfloat16", at_stage2=True)
    assert set(f32) == set(bf16)
    assert float(f32["loss/r_total"]) > 0  # stage 2 really ran R
    for name in f32:
        if name.startswith("loss/"):
            np.testing.assert_allclose(bf16[name], f32[name], rtol=RTOL, atol=ATOL, err_msg=name)


def test_unknown_compute_dtype_is_a_clear_error():
    config = tiny_config()
    config.model.compute_dtype = "float16"
    with pytest.raises(ValueError, match=r"model\.compute_dtype='float16'.*bfloat16"):
        setup(config)
