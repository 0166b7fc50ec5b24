"""Networks: parameter counts at the paper's size (Tables I-II, by hand) and output shapes."""

import jax
import jax.numpy as jnp
import pytest

from configs.default import get_config
from fergan.methods.fesr.networks import build_networks
from fergan.models import LightCNN29

K, N, C = 7, 64, 1  # classes, latent size, channels (the paper's CK+ setting).


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def dense(cin, cout, bias=True):
    return cin * cout + (cout if bias else 0)


def instance_norm(ch):
    return 2 * ch  # scale + bias


def mfm(k, cin, cout):
    return conv(k, cin, 2 * cout)


def count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def abstract_init(module, *args, method=None):
    return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, method=method))[
        "params"
    ]


@pytest.fixture(scope="module")
def paper_nets():
    config = get_config()
    assert config.model.image_size == 128 and config.model.width == 1.0
    return build_networks(config.model)


def test_generator_parameter_count(paper_nets):
    # Genc: Conv(64..1024, 4, 2) without bias (an affine IN follows), IN, then FC(64) on 4x4x1024.
    genc = (
        conv(4, C, 64, False) + instance_norm(64)
        + conv(4, 64, 128, False) + instance_norm(128)
        + conv(4, 128, 256, False) + instance_norm(256)
        + conv(4, 256, 512, False) + instance_norm(512)
        + conv(4, 512, 1024, False) + instance_norm(1024)
        + dense(4 * 4 * 1024, N)
    )  # fmt: skip
    # Gdec: FC to 2x2x1024 from [z, u], DeConv(512..32, 4, 2) + IN, DeConv(c, 4, 2) with bias.
    gdec = (
        dense(N + K, 2 * 2 * 1024)
        + conv(4, 1024, 512, False) + instance_norm(512)
        + conv(4, 512, 256, False) + instance_norm(256)
        + conv(4, 256, 128, False) + instance_norm(128)
        + conv(4, 128, 64, False) + instance_norm(64)
        + conv(4, 64, 32, False) + instance_norm(32)
        + conv(4, 32, C)
    )  # fmt: skip
    assert genc == 12_194_752 and gdec == 11_471_297
    params = abstract_init(paper_nets.generator, jnp.zeros((1, 128, 128, C)), jnp.zeros((1, K)))
    assert count(params["enc"]) == genc
    assert count(params["dec"]) == gdec


def test_discriminator_parameter_counts(paper_nets):
    dimg = (
        conv(4, C, 64) + conv(4, 64, 128) + conv(4, 128, 256) + conv(4, 256, 512)
        + conv(4, 512, 1)  # adversarial head
        + conv(4, 512, 1024) + conv(4, 1024, K)  # classification head
    )  # fmt: skip
    dz = dense(N, 64) + dense(64, 32) + dense(32, 16) + dense(16, 1)
    assert dimg == 11_267_016 and dz == 6_785
    assert count(abstract_init(paper_nets.dimg, jnp.zeros((1, 128, 128, C)))) == dimg
    assert count(abstract_init(paper_nets.dz, jnp.zeros((1, N)))) == dz


def lightcnn_trunk_count():
    """conv1 .. group2 of LightCNN-29 v2 (pooling has no parameters)."""
    return (
        mfm(5, 1, 48)
        + 1 * (mfm(3, 48, 48) * 2)  # block1: one residual block
        + mfm(1, 48, 48) + mfm(3, 48, 96)  # group1
        + 2 * (mfm(3, 96, 96) * 2)  # block2
        + mfm(1, 96, 96) + mfm(3, 96, 192)  # group2
    )  # fmt: skip


def test_lightcnn_parameter_count():
    rest = (
        3 * (mfm(3, 192, 192) * 2)  # block3
        + mfm(1, 192, 192) + mfm(3, 192, 128)  # group3
        + 4 * (mfm(3, 128, 128) * 2)  # block4
        + mfm(1, 128, 128) + mfm(3, 128, 128)  # group4
        + dense(8 * 8 * 128, 256)  # fc: the 256-d identity feature
    )  # fmt: skip
    fc2 = dense(256, 80013, bias=False)
    assert lightcnn_trunk_count() + rest + fc2 == 30_959_200
    net = LightCNN29(1.0, 80013)
    x = jnp.zeros((1, 128, 128, 1))
    full = abstract_init(net, x)
    assert count(full) == lightcnn_trunk_count() + rest + fc2
    trunk_names = ["conv1", "block1_0", "group1", "block2_0", "block2_1", "group2"]
    assert sum(count(full[n]) for n in trunk_names) == lightcnn_trunk_count()


def test_recognizer_parameter_count(paper_nets):
    # Rext head after the frozen 16x16x192 trunk: Conv(256,3,2), Conv(512,3,2), FC 2048, FC 512;
    # Rcls: FC K.
    head = (
        conv(3, 192, 256) + conv(3, 256, 512)
        + dense(4 * 4 * 512, 2048) + dense(2048, 512) + dense(512, K)
    )  # fmt: skip
    assert head == 19_454_727
    assert count(abstract_init(paper_nets.recognizer, jnp.zeros((1, 16, 16, 192)))) == head


@pytest.mark.parametrize("size", [128, 64, 32])
def test_output_shapes(size):
    config = get_config()
    config.model.image_size = size
    nets = build_networks(config.model)
    b = 2
    x = jnp.zeros((b, size, size, C))
    u = jnp.zeros((b, K))

    def shapes(module, *args, method=None):
        params = abstract_init(module, *args, method=method)
        return jax.eval_shape(lambda p: module.apply({"params": p}, *args, method=method), params)

    assert shapes(nets.generator, x, u).shape == (b, size, size, C)
    assert shapes(nets.generator, x, method=nets.generator.encode).shape == (b, N)
    adv, logits = shapes(nets.dimg, x)
    assert adv.shape == (b,) and logits.shape == (b, K)
    assert shapes(nets.dz, jnp.zeros((b, N))).shape == (b,)
    x1 = jnp.zeros((b, size, size, 1))
    trunk = shapes(nets.identity, x1, method=LightCNN29.trunk)
    assert trunk.shape == (b, size // 8, size // 8, 192)
    logits_id, feature = shapes(nets.identity, x1)
    assert feature.shape == (b, 256) and logits_id.shape == (b, 80013)
    feat, logits = shapes(nets.recognizer, jnp.zeros(trunk.shape))
    assert feat.shape == (b, 512) and logits.shape == (b, K)


def test_width_multiplier_scales_channels():
    config = get_config()
    config.model.image_size = 32
    config.model.width = 0.5
    nets = build_networks(config.model)
    params = abstract_init(nets.generator, jnp.zeros((1, 32, 32, 1)), jnp.zeros((1, K)))
    assert params["enc"]["conv0"]["kernel"].shape == (4, 4, 1, 32)
    assert params["enc"]["conv2"]["kernel"].shape == (4, 4, 64, 128)


def test_generator_width_widens_g_alone():
    config = get_config()
    config.model.image_size = 32
    config.model.width = 0.25
    narrow = build_networks(config.model)
    config.model.generator_width = 1.0
    wide = build_networks(config.model)
    params = abstract_init(wide.generator, jnp.zeros((1, 32, 32, 1)), jnp.zeros((1, K)))
    # G at width 1: Table I's first three stages at 32 px (64, 128, 256) and Gdec's halves.
    assert params["enc"]["conv2"]["kernel"].shape == (4, 4, 128, 256)
    assert params["dec"]["deconv2"]["kernel"].shape == (4, 4, 64, 32)
    assert wide.generator.width == 1.0 and narrow.generator.width == 0.25
    for name in ("dimg", "dz", "identity", "recognizer"):  # Every other network keeps 0.25.
        assert getattr(wide, name) == getattr(narrow, name), name
    config.model.generator_width = -1.0
    with pytest.raises(ValueError, match=r"model.generator_width=-1.0 must be >= 0"):
        build_networks(config.model)
