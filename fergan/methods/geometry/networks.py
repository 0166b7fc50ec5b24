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
            h = nn.relu(
                _batch_norm(train, axis_name, f"bn{i}")(
                    nn.Dense(units, kernel_init=init_normal, name=f"fc{i}")(h)
                )
            )
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
            conv = nn.Conv(
                scaled(ch, self.width),
                (KERNEL, KERNEL),
                2,
                kernel_init=init_normal,
                name=f"conv{i}",
            )
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
            deconv = nn.ConvTranspose(
                scaled(ch, self.width),
                (KERNEL, KERNEL),
                (2, 2),
                kernel_init=init_normal,
                name=f"deconv{i}",
            )
            h = nn.relu(deconv(h))
        out = nn.ConvTranspose(
            self.channels, (KERNEL, KERNEL), (1, 1), kernel_init=init_normal, name="out"
        )
        return jnp.tanh(out(h))


class AttributeDiscriminator(nn.Module):
    """D_att: (face [B, S, S, c], condition f(g_t) [B, 32]) -> real/fake logit [B]."""

    width: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, condition: jax.Array, train: bool, axis_name=None):
        h = x
        for i, ch in enumerate(D_ATT_CHANNELS):
            conv = nn.Conv(
                scaled(ch, self.width),
                (KERNEL, KERNEL),
                2,
                kernel_init=init_normal,
                name=f"conv{i}",
            )
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


RESNET_STAGES = (3, 4, 6, 3)  # Bottleneck blocks per stage (ResNet-50).
RESNET_WIDTHS = (64, 128, 256, 512)  # Inner channels per stage; outputs are 4x.
RESNET_HIDDEN = 1024  # The first of the two fully connected layers after pool5 (decision).


class Bottleneck(nn.Module):
    """ResNet's 1x1 -> 3x3 (stride) -> 1x1 (4x channels) block with batch norm and a projected
    shortcut where the shape changes: [B, H, W, C] -> [B, H/s, W/s, 4 inner]."""

    inner: int
    stride: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, axis_name: str | None = None) -> jax.Array:
        bn = lambda name: _batch_norm(train, axis_name, name)
        conv = lambda ch, k, s, name: nn.Conv(
            ch, (k, k), s, use_bias=False, kernel_init=init_normal, name=name
        )
        h = nn.relu(bn("bn0")(conv(self.inner, 1, 1, "conv0")(x)))
        h = nn.relu(bn("bn1")(conv(self.inner, 3, self.stride, "conv1")(h)))
        h = bn("bn2")(conv(4 * self.inner, 1, 1, "conv2")(h))
        if x.shape[-1] != 4 * self.inner or self.stride != 1:
            x = bn("bn_proj")(conv(4 * self.inner, 1, self.stride, "proj")(x))
        return nn.relu(h + x)


class ResNet50Classifier(nn.Module):
    """The paper's C (Sec. IV-B): ResNet-50 with two fully connected layers after pool5 (FC 1024
    + ReLU, FC K), every weight from N(0, 0.02), trained from scratch. Faces [B, S, S, c] ->
    (pool5 feature [B, 2048 width], logits [B, K]); S >= 32."""

    num_classes: int
    width: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, axis_name: str | None = None):
        h = nn.Conv(
            scaled(64, self.width), (7, 7), 2, use_bias=False, kernel_init=init_normal, name="conv0"
        )(x)
        h = nn.relu(_batch_norm(train, axis_name, "bn0")(h))
        h = nn.max_pool(h, (3, 3), (2, 2), padding="SAME")
        for stage, (blocks, inner) in enumerate(zip(RESNET_STAGES, RESNET_WIDTHS, strict=True)):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                block = Bottleneck(scaled(inner, self.width), stride, name=f"stage{stage}_{i}")
                h = block(h, train, axis_name)
        feature = jnp.mean(h, axis=(1, 2))
        hidden = nn.Dense(scaled(RESNET_HIDDEN, self.width), kernel_init=init_normal, name="fc0")
        logits = nn.Dense(self.num_classes, kernel_init=init_normal, name="fc1")
        return feature, logits(nn.relu(hidden(feature)))
