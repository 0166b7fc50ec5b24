"""LSSL's losses on constructed inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fergan import losses as fesr_losses
from fergan.methods.lssl import losses


def test_patch_score_is_the_mean_of_each_sample_map():
    adv = jnp.arange(2 * 2 * 2, dtype=jnp.float32).reshape(2, 2, 2)
    np.testing.assert_allclose(losses.patch_score(adv), [1.5, 5.5])
    np.testing.assert_allclose(losses.patch_score(adv[..., None]), [1.5, 5.5])


def test_softmax_classification_is_the_shared_cross_entropy():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    labels = jnp.array([0, 2])
    np.testing.assert_allclose(
        losses.attribute_classification_loss(logits, labels),
        fesr_losses.classification_loss(logits, labels),
    )


def test_bce_classification_sums_binary_terms_over_attributes():
    logits = jnp.array([[2.0, -1.0, 0.5]])
    labels = jnp.array([1])
    p = jax.nn.sigmoid(logits[0])
    # A Eq. 2: -y_i log D_i - (1 - y_i) log(1 - D_i), summed over the m attributes.
    expected = -np.log(1 - p[0]) - np.log(p[1]) - np.log(1 - p[2])
    value = losses.attribute_classification_loss(logits, labels, "bce")
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"lssl\.cls_loss='hinge'"):
        losses.attribute_classification_loss(logits, labels, "hinge")


def test_identity_loss_is_the_mean_absolute_error():
    x = jnp.zeros((2, 4, 4, 1))
    assert float(losses.identity_loss(x, x)) == 0.0
    np.testing.assert_allclose(losses.identity_loss(x, x + 0.5), 0.5)


def test_bidirectional_loss_adds_image_latent_and_side_terms():
    x = jnp.zeros((2, 4, 4, 3))
    h = jnp.ones((2, 2, 2, 8))
    # Image term 0.25, latent term 0.5, side term 1.0.
    no_side = losses.bidirectional_loss(x, x + 0.25, h, h - 0.5)
    np.testing.assert_allclose(no_side, 0.75)
    with_side = losses.bidirectional_loss(x, x + 0.25, h, h - 0.5, s=x, s_back=x - 1.0)
    np.testing.assert_allclose(with_side, 1.75)
    # The gradient reaches the reconstruction and both latents.
    g = jax.grad(lambda b, lf: losses.bidirectional_loss(x, b, h, lf), argnums=(0, 1))(
        x + 0.25, h - 0.5
    )
    assert all(float(jnp.abs(t).sum()) > 0 for t in g)
