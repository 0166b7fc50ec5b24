"""LSSL networks: parameter counts against Tables I-II of paper A (by hand), shapes at every
supported size, the width multiplier, and the decoder's use of the expression code.

Where the tables are silent, the counts below encode these choices (see networks.py):
  * a residual block has two 3x3 convs (StarGAN's block; Table I lists one row per block);
  * a conv followed by the affine instance norm has no bias; IN has a scale and a shift;
  * a sub-pixel conv is a 3x3 conv to 4*C channels before the x2 depth-to-space to C;
  * the code (K entries) joins the latent's channels before the first sub-pixel conv;
  * every discriminator conv has a bias (no normalisation); the class head is FC on the
    flattened 2x2x2048 map.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fergan.methods.lssl.networks import LsslDiscriminator, LsslGenerator, depth_to_space

K, C = 7, 3  # classes, image channels (RGB, Table I's 6-channel (x, s) input)


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def dense(cin, cout):
    return cin * cout + cout


def instance_norm(ch):
    return 2 * ch  # scale + shift


def count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def abstract_init(module, *args, method=None):
    """Parameter shapes only: jax.eval_shape runs no init compute (the 128 px G has ~150M)."""
    return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, method=method))[
        "params"
    ]


def generator_counts(side, w=1.0):
    """(Genc, Gdec) parameters of Table I at 128 px; w scales every hidden width."""
    ch = {n: max(1, round(n * w)) for n in (64, 128, 256, 512, 1024)}
    cin = 2 * C if side else C
    n = ch[1024]
    genc = (
        conv(7, cin, ch[64], False) + instance_norm(ch[64])  # 7x7/1 stem
        + conv(4, ch[64], ch[128], False) + instance_norm(ch[128])  # 4x4/2 stages
        + conv(4, ch[128], ch[256], False) + instance_norm(ch[256])
        + conv(4, ch[256], ch[512], False) + instance_norm(ch[512])
        + conv(4, ch[512], n, False) + instance_norm(n)
        + 6 * 2 * (conv(3, n, n, False) + instance_norm(n))  # 6 RBs of two convs each
    )  # fmt: skip
    heads = 2 if side else 1  # x' and s' (7x7 conv + tanh, with bias)
    gdec = (
        conv(3, n + K, 4 * ch[512], False) + instance_norm(ch[512])  # sub-pixel stages
        + conv(3, ch[512], 4 * ch[256], False) + instance_norm(ch[256])
        + conv(3, ch[256], 4 * ch[128], False) + instance_norm(ch[128])
        + conv(3, ch[128], 4 * ch[64], False) + instance_norm(ch[64])
        + heads * conv(7, ch[64], C)
    )  # fmt: skip
    return genc, gdec


def discriminator_count(side, w=1.0):
    """Table II at 128 px: six 4x4/2 convs 64 .. 2048, Conv3x3 -> 1 patch head, FC -> K."""
    widths = [max(1, round(n * w)) for n in (64, 128, 256, 512, 1024, 2048)]
    total, cin = 0, 2 * C if side else C
    for cout in widths:
        total += conv(4, cin, cout)
        cin = cout
    return total + conv(3, cin, 1) + dense(2 * 2 * cin, K)


def generator_params(size, side, w=1.0):
    g = LsslGenerator(size, w, C, K, side)
    x = jnp.zeros((1, size, size, C))
    return abstract_init(g, x, x if side else None, jnp.zeros((1, K)))


def test_generator_parameter_count():
    genc, gdec = generator_counts(side=True)
    assert (genc, gdec) == (124_434_688, 25_217_286)
    params = generator_params(128, side=True)
    assert count(params["enc"]) == genc
    assert count(params["dec"]) == gdec
    # Without the side image: 3 fewer stem input channels, no s' head.
    genc0, gdec0 = generator_counts(side=False)
    assert genc - genc0 == 7 * 7 * C * 64 and gdec - gdec0 == conv(7, 64, C)
    params = generator_params(128, side=False)
    assert (count(params["enc"]), count(params["dec"])) == (genc0, gdec0)


def test_discriminator_parameter_count():
    d = discriminator_count(side=True)
    assert d == 44_781_512
    x = jnp.zeros((1, 128, 128, C))
    assert count(abstract_init(LsslDiscriminator(128, 1.0, K), x, x)) == d
    assert count(abstract_init(LsslDiscriminator(128, 1.0, K), x)) == discriminator_count(False)


def test_width_multiplier_scales_counts():
    w = 0.25
    genc, gdec = generator_counts(side=True, w=w)
    params = generator_params(128, side=True, w=w)
    assert (count(params["enc"]), count(params["dec"])) == (genc, gdec)
    assert params["enc"]["res0"]["conv0"]["kernel"].shape == (3, 3, 256, 256)
    # The counts are dominated by hidden-to-hidden kernels, so they shrink by about w^2.
    assert 1 / 17 < (genc + gdec) / sum(generator_counts(side=True)) < 1 / 15
    x = jnp.zeros((1, 128, 128, C))
    d = count(abstract_init(LsslDiscriminator(128, w, K), x, x))
    assert d == discriminator_count(side=True, w=w)
    assert 1 / 17 < d / discriminator_count(side=True) < 1 / 15


def shapes(module, *args, method=None):
    params = abstract_init(module, *args, method=method)
    return jax.eval_shape(lambda p: module.apply({"params": p}, *args, method=method), params)


@pytest.mark.parametrize("side", [True, False])
@pytest.mark.parametrize("size", [128, 64, 32])
def test_output_shapes(size, side):
    b, w = 2, 0.25
    g = LsslGenerator(size, w, C, K, side)
    x = jnp.zeros((b, size, size, C))
    s = x if side else None
    code = jnp.zeros((b, K))
    # Every size ends Genc on an 8x8 grid; its width is the deepest stage kept (64 px drops 1024).
    latent = {128: 256, 64: 128, 32: 64}[size]
    assert shapes(g, x, s, method=g.encode).shape == (b, 8, 8, latent)
    x_out, s_out = shapes(g, x, s, code)
    assert x_out.shape == (b, size, size, C)
    if side:
        assert s_out.shape == (b, size, size, C)
    else:
        assert s_out is None
    # The discriminator ends on a 2x2 patch map at every size.
    patches, logits = shapes(LsslDiscriminator(size, w, K), x, s)
    assert patches.shape == (b, 2, 2) and logits.shape == (b, K)


def test_decoder_output_depends_on_code():
    size, b = 32, 2
    g = LsslGenerator(size, 0.25, C, K, side=True)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (b, size, size, C)), jnp.float32)
    s = jnp.asarray(rng.uniform(-1, 1, (b, size, size, C)), jnp.float32)
    codes = jnp.eye(K)[jnp.array([[0, 0], [3, 3], [0, 0]])]  # [3 calls, B, K]
    params = g.init(jax.random.PRNGKey(0), x, s, codes[0])
    h = g.apply(params, x, s, method=g.encode)
    outs = [g.apply(params, h, c, method=g.decode) for c in codes]
    assert np.allclose(outs[0][0], outs[2][0]) and np.allclose(outs[0][1], outs[2][1])
    assert np.abs(outs[0][0] - outs[1][0]).max() > 1e-4
    assert np.abs(outs[0][1] - outs[1][1]).max() > 1e-4
    # A soft code (not one-hot) is accepted too.
    soft = jnp.full((b, K), 1.0 / K)
    assert g.apply(params, h, soft, method=g.decode)[0].shape == (b, size, size, C)


def test_depth_to_space_order():
    # Channel c*4 + i*2 + j of input cell (y, x) lands at output (2y + i, 2x + j), channel c.
    x = jnp.arange(1 * 2 * 3 * 8, dtype=jnp.float32).reshape(1, 2, 3, 8)
    y = depth_to_space(x)
    assert y.shape == (1, 4, 6, 2)
    for yy, xx, i, j, c in [(0, 0, 0, 0, 0), (1, 2, 1, 0, 1), (0, 1, 1, 1, 0), (1, 1, 0, 1, 1)]:
        assert y[0, 2 * yy + i, 2 * xx + j, c] == x[0, yy, xx, c * 4 + i * 2 + j]
