"""fergan.batching.batched_apply: fixed-size padded batches, outputs in order."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from fergan.batching import batched_apply


@pytest.mark.parametrize("n", [1, 4, 7, 8, 9])
def test_full_batches_only_and_order_kept(n):
    seen = []

    def fn(a, b):
        seen.append((a.copy(), b.copy()))
        return a * 10 + b

    a = np.arange(n, dtype=np.int64)
    b = np.arange(n, dtype=np.int64)[::-1].copy()
    out = batched_apply(fn, a, b, batch=4)
    np.testing.assert_array_equal(out, a * 10 + b)
    assert len(seen) == -(-n // 4)
    assert all(len(x) == 4 and len(y) == 4 for x, y in seen)  # Every call sees a full batch.


def test_padding_repeats_the_last_row_of_every_array():
    seen = []

    def fn(a, b):
        seen.append((a, b))
        return a

    a = np.arange(6).reshape(3, 2)
    b = np.array([5, 6, 7])
    out = batched_apply(fn, a, b, batch=5)
    np.testing.assert_array_equal(out, a)
    np.testing.assert_array_equal(seen[0][0], [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    np.testing.assert_array_equal(seen[0][1], [5, 6, 7, 7, 7])


def test_jax_outputs_come_back_as_numpy():
    x = np.ones((5, 3), np.float32)
    out = batched_apply(lambda v: jnp.sum(v, axis=1, keepdims=True), x, batch=2)
    assert isinstance(out, np.ndarray) and out.shape == (5, 1)


def test_empty_input_gives_empty_output_of_fn_shape():
    calls = []

    def fn(x):
        calls.append(x)
        return jnp.zeros((x.shape[0], 7), jnp.float16)

    out = batched_apply(fn, np.zeros((0, 3, 3), np.float32), batch=4)
    assert out.shape == (0, 7) and out.dtype == np.float16
    assert all(not isinstance(c, np.ndarray) for c in calls)  # Only traced, never run.


def test_mismatched_or_missing_arrays_raise():
    with pytest.raises(ValueError, match="different leading sizes"):
        batched_apply(lambda a, b: a, np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least one array"):
        batched_apply(lambda: None)
