"""ECGAN's losses on constructed inputs, each against its equation by hand."""

import re

import jax.numpy as jnp
import numpy as np
import pytest

from fergan.methods.ecgan import losses


def test_lsgan_terms():
    real, fake = jnp.full((2, 3, 3), 1.0), jnp.zeros((2, 3, 3))
    assert float(losses.lsgan_discriminator_loss(real, fake)) == 0.0  # A perfect D.
    # D(y) = 0.5 everywhere and D(fake) = 0.5: 0.25 + 0.25.
    half = jnp.full((2, 3, 3), 0.5)
    assert float(losses.lsgan_discriminator_loss(half, half)) == pytest.approx(0.5)
    assert float(losses.lsgan_generator_loss(jnp.full((2, 3, 3), 1.0))) == 0.0
    assert float(losses.lsgan_generator_loss(jnp.full((2, 3, 3), -1.0))) == pytest.approx(4.0)


def test_cycle_and_identity_are_two_mean_absolute_errors():
    x, y = jnp.zeros((2, 4, 4, 1)), jnp.ones((2, 4, 4, 1))
    assert float(losses.cycle_loss(x, x + 0.5, y, y - 0.25)) == pytest.approx(0.75)
    assert float(losses.identity_loss(x, x, y, y)) == 0.0
    assert float(losses.identity_loss(x, x - 1.0, y, y)) == pytest.approx(1.0)


def test_context_loss_is_the_mean_squared_feature_difference():
    a = jnp.zeros((2, 3, 3, 4))
    b = a.at[:, 0, 0, :].set(2.0)  # 4 of 36 elements per sample differ by 2.
    assert float(losses.context_loss(a, b)) == pytest.approx(4.0 * 4 / 36)


def test_weighted_mask_loss_counts_the_face_only():
    x = jnp.zeros((1, 4, 4, 3))
    mask = jnp.zeros((1, 4, 4, 1)).at[:, :2].set(1.0)  # The top half is face.
    background_error = x.at[:, 2:].set(1.0)
    face_error = x.at[:, :2].set(0.5)
    assert float(losses.weighted_cycle_loss(x, background_error, mask)) == 0.0
    assert float(losses.weighted_cycle_loss(x, face_error, mask)) == pytest.approx(0.5)
    # An all-ones mask is the plain mean absolute error.
    ones = jnp.ones_like(mask)
    assert float(losses.weighted_cycle_loss(x, face_error, ones)) == pytest.approx(0.25)


def test_masked_input_form_sends_the_masked_face_through_the_cycle():
    x = jnp.ones((1, 4, 4, 1))
    mask = jnp.zeros((1, 4, 4, 1)).at[:, :, :2].set(1.0)
    seen = []

    def cycle(im):
        seen.append(np.asarray(im))
        return im * 0.0

    value = losses.mask_loss("masked_input", x, None, mask, cycle)
    np.testing.assert_array_equal(seen[0], np.asarray(x * mask))
    assert float(value) == pytest.approx(0.5)  # |0 - x M| over half the pixels.
    with pytest.raises(ValueError, match=re.escape("ecgan.mask_loss='hull'")):
        losses.mask_loss("hull", x, x, mask, cycle)
