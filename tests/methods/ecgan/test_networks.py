"""ECGAN networks: parameter counts by hand (CycleGAN's ResNet-6 generator with the condition
fused at the bottleneck, the 70x70 PatchGAN with and without a condition, and fergan's FESR
generator as the other generator), shapes at every supported size, and the condition's use.

The counts encode networks.py's choices: a conv before an instance norm has no bias, IN has a
scale and a shift, the tiled z (K channels) meets the 256-channel bottleneck in a 3x3 fuse conv
back to 256, the up-sampling layers are 3x3 stride-2 transposed convs, the output conv keeps its
bias; the PatchGAN's first conv and its output conv have biases, the others feed IN.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.synthetic_faces
from fergan.methods.ecgan import model as ecgan_model
from fergan.methods.ecgan.networks import PatchDiscriminator, ResnetGenerator

K, C = 7, 3


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def shapes(module, *args):
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), *args)


def resnet_generator_count(w=1.0):
    ch = lambda n: max(1, round(n * w))
    stem = conv(7, C, ch(64), bias=False) + 2 * ch(64)
    down = conv(3, ch(64), ch(128), False) + 2 * ch(128) + conv(3, ch(128), ch(256), False)
    down += 2 * ch(256)
    fuse = conv(3, ch(256) + K, ch(256), False) + 2 * ch(256)
    residual = 6 * (2 * conv(3, ch(256), ch(256), False) + 4 * ch(256))
    up = conv(3, ch(256), ch(128), False) + 2 * ch(128) + conv(3, ch(128), ch(64), False)
    up += 2 * ch(64)
    out = conv(7, ch(64), C)
    return stem + down + fuse + residual + up + out


def patch_count(conditions=0, w=1.0):
    ch = lambda n: max(1, round(n * w))
    first = conv(4, C + conditions, ch(64))
    middle = conv(4, ch(64), ch(128), False) + 2 * ch(128) + conv(4, ch(128), ch(256), False)
    middle += 2 * ch(256) + conv(4, ch(256), ch(512), False) + 2 * ch(512)
    return first + middle + conv(4, ch(512), 1)


def test_resnet_generator_count_at_width_one():
    params = shapes(ResnetGenerator(1.0, C, K), jnp.zeros((1, 128, 128, C)), jnp.zeros((1, K)))
    assert count(params) == resnet_generator_count() == 8_447_875


def test_patch_discriminators_count():
    x = jnp.zeros((1, 128, 128, C))
    assert count(shapes(PatchDiscriminator(1.0), x)) == patch_count() == 2_765_633
    conditional = shapes(PatchDiscriminator(1.0, K), x, jnp.zeros((1, K)))
    assert count(conditional) == patch_count(K) == 2_772_801


def test_width_multiplier_scales_the_counts():
    x, z = jnp.zeros((1, 32, 32, C)), jnp.zeros((1, K))
    assert count(shapes(ResnetGenerator(0.25, C, K), x, z)) == resnet_generator_count(0.25)
    assert count(shapes(PatchDiscriminator(0.25, K), x, z)) == patch_count(K, 0.25)


def test_both_generator_options_at_the_paper_size():
    # Built from a config at 128 px, width 1, grey (CK+'s setting): `fesr` is FESR's G of its
    # Table I with u = one-hot z, whose count tests/core/test_models.py derives by hand
    # (Genc 12,194,752 + Gdec 11,471,297); `resnet` is the count above with c = 1.
    config = configs.synthetic_faces.get_config("ECGAN")
    config.model.channels = 1
    x, z = jnp.zeros((1, 128, 128, 1)), jnp.zeros((1, K))
    counts = {}
    for name in ("fesr", "resnet"):
        config.ecgan.generator = name
        model = ecgan_model.build(config, steps_per_epoch=1)
        counts[name] = count(shapes(model.generator, x, z))
    assert counts["fesr"] == 12_194_752 + 11_471_297
    assert isinstance(ecgan_model.build(config, 1).generator, ResnetGenerator)
    assert counts["resnet"] == 8_447_875 - (7 * 7 * 2 * 64) - (7 * 7 * 64 * 2 + 2)


@pytest.mark.parametrize("size,patches", [(32, 2), (64, 6), (128, 14)])
def test_shapes_at_every_size(size, patches):
    x, z = jnp.zeros((2, size, size, C)), jnp.zeros((2, K))
    g = ResnetGenerator(0.125, C, K)
    assert jax.eval_shape(lambda p: g.apply(p, x, z), shapes(g, x, z)).shape == x.shape
    d = PatchDiscriminator(0.125, K)
    assert jax.eval_shape(lambda p: d.apply(p, x, z), shapes(d, x, z)).shape == (
        2,
        patches,
        patches,
    )


def test_the_condition_changes_the_output_and_is_checked():
    g = ResnetGenerator(0.125, 1, 4)
    x = jax.random.uniform(jax.random.PRNGKey(1), (1, 32, 32, 1), minval=-1, maxval=1)
    params = g.init(jax.random.PRNGKey(0), x, jnp.zeros((1, 4)))
    a = g.apply(params, x, jax.nn.one_hot(jnp.array([0]), 4))
    b = g.apply(params, x, jax.nn.one_hot(jnp.array([2]), 4))
    assert float(jnp.max(jnp.abs(a - b))) > 1e-4
    assert float(jnp.max(jnp.abs(a))) < 1.0  # tanh
    with pytest.raises(ValueError, match="code has 3 entries"):
        g.apply(params, x, jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match="num_conditions=4"):
        PatchDiscriminator(0.125, 4).init(jax.random.PRNGKey(0), x)
    np.testing.assert_array_equal(a.shape, x.shape)
