"""The 4x4 stride-2 (de)convolutions (custom derivatives) and the 2x2 pools equal Flax's own."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fergan.losses import gradient_penalty
from fergan.models.layers import down_conv, up_conv
from fergan.models.lightcnn import max_avg_pool, max_pool


def _pair(upsample: bool, use_bias: bool):
    ours = (up_conv if upsample else down_conv)(6, use_bias=use_bias)
    if upsample:
        flax_layer = nn.ConvTranspose(6, (4, 4), (2, 2), padding="SAME", use_bias=use_bias)
    else:
        flax_layer = nn.Conv(6, (4, 4), (2, 2), padding=((1, 1), (1, 1)), use_bias=use_bias)
    return ours, flax_layer


def _close(a, b, rtol=1e-5, atol=1e-5):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=rtol, atol=atol), a, b)


# Size 2 (up) and 4 (down) take the small-input branch of conv4s2_adjoint.
@pytest.mark.parametrize("upsample,size", [(False, 4), (False, 8), (True, 2), (True, 8)])
@pytest.mark.parametrize("use_bias", [False, True])
def test_same_parameters_outputs_and_gradients(upsample, size, use_bias):
    ours, flax_layer = _pair(upsample, use_bias)
    x = jax.random.normal(jax.random.key(1), (3, size, size, 5))
    params = ours.init(jax.random.key(0), x)
    flax_params = flax_layer.init(jax.random.key(0), x)
    jax.tree.map(np.testing.assert_array_equal, params, flax_params)  # same tree, same init
    # A nonzero bias so its gradient path is exercised too.
    params = jax.tree.map(lambda p: p + 0.1, params)
    _close(ours.apply(params, x), flax_layer.apply(params, x))

    def loss(layer):
        return lambda p, x: jnp.sum(jnp.sin(layer.apply(p, x)))

    _close(jax.grad(loss(ours), (0, 1))(params, x), jax.grad(loss(flax_layer), (0, 1))(params, x))


@pytest.mark.parametrize("upsample", [False, True])
def test_gradient_penalty_second_derivative_matches(upsample):
    """WGAN-GP differentiates the input gradient again: the custom VJPs must hold to 2nd order."""
    ours, flax_layer = _pair(upsample, use_bias=True)
    real, fake = jax.random.normal(jax.random.key(2), (2, 3, 8, 8, 5))
    t = jax.random.uniform(jax.random.key(3), (3,))
    params = ours.init(jax.random.key(0), real)

    def penalty(layer):
        def critic(x, p):
            return jnp.mean(jnp.tanh(layer.apply(p, x)) ** 2, axis=(1, 2, 3))

        return lambda p: gradient_penalty(lambda x: critic(x, p), real, fake, t)

    ours_grad = jax.grad(penalty(ours))(params)
    flax_grad = jax.grad(penalty(flax_layer))(params)
    assert float(jnp.abs(ours_grad["params"]["kernel"]).max()) > 0
    _close(ours_grad, flax_grad, rtol=1e-4)


def test_bfloat16_compute_dtype():
    layer = down_conv(4, dtype=jnp.bfloat16)
    x = jnp.ones((1, 8, 8, 3))
    params = layer.init(jax.random.key(0), x)
    assert layer.apply(params, x).dtype == jnp.bfloat16
    assert params["params"]["kernel"].dtype == jnp.float32
    grads = jax.grad(lambda p: jnp.sum(layer.apply(p, x).astype(jnp.float32)))(params)
    assert grads["params"]["kernel"].dtype == jnp.float32


def test_lightcnn_pooling_equals_window_pooling():
    x = jax.random.normal(jax.random.key(4), (2, 8, 8, 3))

    def window_pool(x):
        return nn.max_pool(x, (2, 2), (2, 2)) + nn.avg_pool(x, (2, 2), (2, 2))

    _close(max_avg_pool(x), window_pool(x))
    _close(max_pool(x), nn.max_pool(x, (2, 2), (2, 2)))

    def loss(pool):
        return lambda x: jnp.sum(jnp.sin(pool(x)))

    _close(jax.grad(loss(max_avg_pool))(x), jax.grad(loss(window_pool))(x))
