"""The networks of geometry-guided pose-invariant FER (paper geometry_guided_pose_invariant_fer,
Table II), with the decisions of docs/methods.md where the paper disagrees with itself.

  * `GeometryEmbedding` E: 136 landmark coordinates -> FC 128-64-32 (the code f(g)) -64-128,
    each with batch norm and ReLU, -> FC 136 + tanh (the reconstruction of L_gr, Eq. 9).
  * `Encoder` G_enc: Conv 5x5/2 with 64, 128, 256, 512, 1024 channels and ReLU, no norm, then
    FC 50 + tanh: the identity code f(x).
  * `Decoder` G_dec: [f(x), f(g_t)] (50 + 32) -> FC to 4x4x1024 at 128 px (S/32 on a side) ->
    five stride-2 5x5 transposed convs with the first channels of Table II's list (1024, 512,
    256, 128, 64), ReLU, no norm -> a stride-1 5x5 transposed conv to c -> tanh.
  * `AttributeDiscriminator` D_att: Conv 5x5/2 16, 32, 64, 128 with batch norm and ReLU, the
    condition (the code of the target landmarks) tiled over conv1's output, then FC 1024 + BN +
    LeakyReLU, then FC 1 (a logit).
  * `IdentityDiscriminator` D_i: FC 64-32-16 with batch norm and ReLU, then FC 1 (a logit).

Every weight starts from N(0, 0.02), as the paper states. Batch norm keeps running statistics in
the `batch_stats` collection and, given `axis_name`, takes its batch moments over every device,
so a step on N devices normalises exactly as one device with the whole batch. `width` scales
the image networks' hidden channels (E and D_i are small and keep the paper's sizes).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fergan.models.layers import scaled, tile_code

NUM_LANDMARK_COORDS = 136  # 68 (x, y) points in [-1, 1].
GEOMETRY_CODE = 32  # f(g): the width of E's middle layer.
IDENTITY_CODE = 50  # f(x): G_enc's output.
EMBEDDING_LAYERS = (128, 64, GEOMETRY_CODE, 64, 128)
CODE_LAYER = 2  # f(g) is the output of EMBEDDING_LAYERS[CODE_LAYER].
ENCODER_CHANNELS = (64, 128, 256, 512, 1024)
DECODER_CHANNELS = (1024, 512, 256, 128, 64, 32, 16)
STRIDED_LAYERS = 5  # Stride-2 layers of G_enc and of G_dec: S -> S/32 -> S.
D_ATT_CHANNELS = (16, 32, 64, 128)
D_ATT_HIDDEN = 1024
D_I_LAYERS = (64, 32, 16)
KERNEL = 5
LRELU_SLOPE = 0.2
BN_MOMENTUM = 0.9

init_normal = nn.initializers.normal(0.02)


def _batch_norm(train: bool, axis_name: str | None, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train, momentum=BN_MOMENTUM, axis_name=axis_name, name=name
    )


def check_image_size(image_size: int) -> None:
    """ValueError naming the key unless S is a multiple of 32 (five stride-2 layers each way)."""
    if image_size < 32 or image_size % 32:
        raise ValueError(f"model.image_size={image_size} must be a multiple of 32 for geometry")


class GeometryEmbedding(nn.Module):
    """E: landmarks g [B, 136] in [-1, 1] -> (code f(g) [B, 32], reconstruction [B, 136])."""

    @nn.compact
    def __call__(self, g: jax.Array, train: bool, axis_name: str | None = None):
        h = g
        for i, units in enumerate(EMBEDDING_LAYERS):
            h = nn.relu(_batch_norm(train, axis_name, f"bn{i}")(
                nn.Dense(units, kernel_init=init_normal, name=f"fc{i}")(h)))  # fmt: skip
            if i == CODE_LAYER:
                code = h
        out = nn.Dense(NUM_LANDMARK_COORDS, kernel_init=init_normal, name="out")(h)
        return code, jnp.tanh(out)


class Encoder(nn.Module):
    """G_enc: faces x [B, S, S, c] in [-1, 1] -> identity code f(x) [B, 50] in (-1, 1)."""

    width: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for i, ch in enumerate(ENCODER_CHANNELS):
            conv = nn.Conv(scaled(ch, self.width), (KERNEL, KERNEL), 2, kernel_init=init_normal,
                           name=f"conv{i}")  # fmt: skip
            h = nn.relu(conv(h))
        h = h.reshape(h.shape[0], -1)
        return jnp.tanh(nn.Dense(IDENTITY_CODE, kernel_init=init_normal, name="fc")(h))


class Decoder(nn.Module):
    """G_dec: (f(x) [B, 50], f(g_t) [B, 32]) -> a face [B, S, S, c] in (-1, 1)."""

    image_size: int
    channels: int
    width: float = 1.0

    @nn.compact
    def __call__(self, identity: jax.Array, geometry: jax.Array) -> jax.Array:
        check_image_size(self.image_size)
        side = self.image_size // 2**STRIDED_LAYERS
        first = scaled(DECODER_CHANNELS[0], self.width)
        h = jnp.concatenate([identity, geometry], axis=-1)
        h = nn.relu(nn.Dense(side * side * first, kernel_init=init_normal, name="fc")(h))
        h = h.reshape(h.shape[0], side, side, first)
        for i, ch in enumerate(DECODER_CHANNELS[:STRIDED_LAYERS]):
            deconv = nn.ConvTranspose(scaled(ch, self.width), (KERNEL, KERNEL), (2, 2),
                                      kernel_init=init_normal, name=f"deconv{i}")  # fmt: skip
            h = nn.relu(deconv(h))
        out = nn.ConvTranspose(self.channels, (KERNEL, KERNEL), (1, 1), kernel_init=init_normal,
                               name="out")  # fmt: skip
        return jnp.tanh(out(h))


class AttributeDiscriminator(nn.Module):
    """D_att: (face [B, S, S, c], condition f(g_t) [B, 32]) -> real/fake logit [B]."""

    width: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, condition: jax.Array, train: bool, axis_name=None):
        h = x
        for i, ch in enumerate(D_ATT_CHANNELS):
            conv = nn.Conv(scaled(ch, self.width), (KERNEL, KERNEL), 2, kernel_init=init_normal,
                           name=f"conv{i}")  # fmt: skip
            h = nn.relu(_batch_norm(train, axis_name, f"bn{i}")(conv(h)))
            if i == 0:
                h = tile_code(h, condition)
        h = h.reshape(h.shape[0], -1)
        h = nn.Dense(scaled(D_ATT_HIDDEN, self.width), kernel_init=init_normal, name="fc")(h)
        h = nn.leaky_relu(_batch_norm(train, axis_name, "bn_fc")(h), LRELU_SLOPE)
        return nn.Dense(1, kernel_init=init_normal, name="out")(h)[:, 0]


class IdentityDiscriminator(nn.Module):
    """D_i: identity codes f [B, 50] -> prior/encoder logit [B]."""

    @nn.compact
    def __call__(self, f: jax.Array, train: bool, axis_name: str | None = None) -> jax.Array:
        h = f
        for i, units in enumerate(D_I_LAYERS):
            h = nn.Dense(units, kernel_init=init_normal, name=f"fc{i}")(h)
            h = nn.relu(_batch_norm(train, axis_name, f"bn{i}")(h))
        return nn.Dense(1, kernel_init=init_normal, name="out")(h)[:, 0]
