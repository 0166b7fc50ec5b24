"""Geometry networks (Table II): parameter counts by hand at 128 px, shapes at 32/64/128, batch
norm statistics over devices equal to one device's; every loss on constructed inputs."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fergan.methods.geometry import losses
from fergan.methods.geometry.networks import (
    AttributeDiscriminator,
    Decoder,
    Encoder,
    GeometryEmbedding,
    IdentityDiscriminator,
    ResNet50Classifier,
)


def dense(i, o):
    return i * o + o


def conv(k, i, o):
    return k * k * i * o + o


def count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def variables(module, *args, **kw):
    return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kw))


def test_parameter_counts_at_128_px():
    c = 3
    e = variables(GeometryEmbedding(), jnp.zeros((2, 136)), train=False)
    sizes = (136, 128, 64, 32, 64, 128)
    e_params = sum(dense(a, b) + 2 * b for a, b in itertools.pairwise(sizes))
    assert count(e["params"]) == e_params + dense(128, 136)
    assert count(e["batch_stats"]) == 2 * (128 + 64 + 32 + 64 + 128)

    enc = variables(Encoder(), jnp.zeros((1, 128, 128, c)))
    chans = (c, 64, 128, 256, 512, 1024)
    convs = sum(conv(5, a, b) for a, b in itertools.pairwise(chans))
    assert count(enc["params"]) == convs + dense(4 * 4 * 1024, 50)

    dec = variables(Decoder(128, c), jnp.zeros((1, 50)), jnp.zeros((1, 32)))
    chans = (1024, 1024, 512, 256, 128, 64)
    deconvs = sum(conv(5, a, b) for a, b in itertools.pairwise(chans))
    assert count(dec["params"]) == dense(82, 4 * 4 * 1024) + deconvs + conv(5, 64, c)

    d_att = variables(AttributeDiscriminator(), jnp.zeros((1, 128, 128, c)), jnp.zeros((1, 32)),
                      train=False)  # fmt: skip
    convs = conv(5, c, 16) + conv(5, 16 + 32, 32) + conv(5, 32, 64) + conv(5, 64, 128)
    bn = 2 * (16 + 32 + 64 + 128 + 1024)
    head = dense(8 * 8 * 128, 1024) + dense(1024, 1)
    assert count(d_att["params"]) == convs + bn + head

    d_i = variables(IdentityDiscriminator(), jnp.zeros((1, 50)), train=False)
    assert count(d_i["params"]) == dense(50, 64) + dense(64, 32) + dense(32, 16) + dense(
        16, 1
    ) + 2 * (64 + 32 + 16)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_at_every_size(size):
    x = jnp.zeros((2, size, size, 1))
    f = jax.eval_shape(lambda: Encoder(width=0.125).init_with_output(jax.random.PRNGKey(0), x)[0])
    assert f.shape == (2, 50)
    out = jax.eval_shape(
        lambda: Decoder(size, 1, width=0.125).init_with_output(
            jax.random.PRNGKey(0), jnp.zeros((2, 50)), jnp.zeros((2, 32))
        )[0]
    )
    assert out.shape == (2, size, size, 1)
    logit = jax.eval_shape(
        lambda: AttributeDiscriminator(0.125).init_with_output(
            jax.random.PRNGKey(0), x, jnp.zeros((2, 32)), train=False
        )[0]
    )
    assert logit.shape == (2,)


def test_bad_size_names_the_key():
    with pytest.raises(ValueError, match=r"model\.image_size"):
        Decoder(48, 1).init(jax.random.PRNGKey(0), jnp.zeros((1, 50)), jnp.zeros((1, 32)))


def test_outputs_are_bounded_and_the_code_is_the_middle_layer():
    e = GeometryEmbedding()
    g = jax.random.uniform(jax.random.PRNGKey(1), (8, 136), minval=-1, maxval=1)
    v = e.init(jax.random.PRNGKey(0), g, train=False)
    (code, recon), _ = e.apply(v, g, train=True, mutable=["batch_stats"])
    assert code.shape == (8, 32) and recon.shape == (8, 136)
    assert np.all(np.abs(recon) < 1) and np.all(code >= 0)  # tanh; ReLU after the code's BN.


def test_batch_norm_over_four_devices_equals_one_batch():
    """The moments over `axis_name` (4 shards of 2) equal those of the whole batch of 8: the
    outputs and the updated running statistics agree."""
    d_i = IdentityDiscriminator()
    f = jax.random.uniform(jax.random.PRNGKey(2), (8, 50), minval=-1, maxval=1)
    v = d_i.init(jax.random.PRNGKey(0), f, train=False)
    whole, whole_stats = d_i.apply(v, f, train=True, mutable=["batch_stats"])
    shard = lambda part: d_i.apply(v, part, train=True, axis_name="d", mutable=["batch_stats"])
    split, split_stats = jax.vmap(shard, axis_name="d")(f.reshape(4, 2, 50))
    np.testing.assert_allclose(split.reshape(8), whole, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(split_stats), jax.tree.leaves(whole_stats), strict=True):
        np.testing.assert_allclose(a[0], b, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a[0], a[3])  # Every device holds the same statistics.
    # Without the axis each shard would normalise alone: a different result (the test can fail).
    alone = jax.vmap(lambda p: d_i.apply(v, p, train=True, mutable=["batch_stats"])[0])(
        f.reshape(4, 2, 50)
    )
    assert np.abs(alone.reshape(8) - whole).max() > 1e-3


def test_discriminator_and_generator_losses():
    zero = jnp.zeros(4)
    np.testing.assert_allclose(losses.discriminator_loss(zero, zero), 2 * np.log(2), rtol=1e-6)
    assert losses.discriminator_loss(jnp.full(4, 20.0), jnp.full(4, -20.0)) < 1e-6
    np.testing.assert_allclose(losses.generator_adversarial_loss(zero), np.log(2), rtol=1e-6)
    assert losses.generator_adversarial_loss(jnp.full(4, 20.0)) < 1e-6


def test_label_smoothing_eq_6():
    k, rho = 6, 0.1
    f = np.asarray(losses.smoothed_labels(jnp.array([2]), k, rho))[0]
    np.testing.assert_allclose(f[2], 1 - (k - 1) * rho / k, rtol=1e-6)
    np.testing.assert_allclose(np.delete(f, 2), rho / k, rtol=1e-6)
    np.testing.assert_allclose(f.sum(), 1.0, rtol=1e-6)
    logits = jax.random.normal(jax.random.PRNGKey(0), (5, k))
    y = jnp.array([0, 1, 2, 3, 4])
    plain = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    np.testing.assert_allclose(losses.smoothed_cross_entropy(logits, y, 0.0), plain, rtol=1e-6)
    assert abs(losses.smoothed_cross_entropy(logits, y, rho) - plain) > 1e-4
    both = losses.classification_loss(logits, y, logits, y, 0.0)
    np.testing.assert_allclose(both, 2 * plain, rtol=1e-6)


def test_content_tv_and_geometry_losses():
    x = jnp.zeros((1, 4, 4, 1))
    np.testing.assert_allclose(losses.content_loss(x, x + 0.5), 0.5)
    stripes = jnp.tile(jnp.array([0.0, 1.0, 0.0, 1.0])[None, None, :, None], (1, 4, 1, 1))
    # Every horizontal neighbour differs by 1, no vertical one.
    np.testing.assert_allclose(losses.total_variation(stripes), 1.0)
    np.testing.assert_allclose(losses.total_variation(jnp.swapaxes(stripes, 1, 2)), 1.0)
    assert losses.total_variation(x) == 0
    g = jnp.zeros((2, 136))
    g_hat = g.at[:, 0].set(3.0).at[:, 1].set(4.0)
    np.testing.assert_allclose(losses.geometry_reconstruction_loss(g, g_hat), 5.0, rtol=1e-6)


def test_resnet50_classifier_counts_and_shapes():
    net = ResNet50Classifier(6)
    x = jnp.zeros((1, 224, 224, 3))
    variables = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), x, False))
    body = 23_508_032  # ResNet-50 without its 1000-way layer (conv and BN scale/offset).
    heads = 2048 * 1024 + 1024 + 1024 * 6 + 6
    assert count(variables["params"]) == body + heads
    small = ResNet50Classifier(4, width=0.125)
    x = jnp.zeros((2, 32, 32, 1))
    feature, logits = jax.eval_shape(
        lambda: small.apply(small.init(jax.random.PRNGKey(0), x, False), x, False)
    )
    assert feature.shape == (2, 256) and logits.shape == (2, 4)
