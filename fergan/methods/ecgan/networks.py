"""ECGAN networks (paper ecgan). The paper gives no layers beyond "the expression vector is
concatenated with the image embedding at the bottleneck" and "the same setups as CycleGAN", so:

  * `ResnetGenerator` (default, `ecgan.generator=resnet`): CycleGAN's ResNet-6 generator,
    c7s1-64, d128, d256, R256 x 6, u128, u64, c7s1-c, with the one-hot z tiled over the
    bottleneck (S/4 x S/4) and fused by a 3x3 conv back to 256 channels before the residual
    blocks. Every conv before an instance norm has no bias (the norm's shift replaces it); the
    output conv keeps its bias. Zero padding (CycleGAN reflects; the count is the same).
  * fergan's FESR generator (`ecgan.generator=fesr`, `fergan.models.Generator`) with u = one-hot
    z: literally "at the fully connected bottleneck".
  * `PatchDiscriminator`: CycleGAN's 70x70 PatchGAN, C64 (no norm) - C128 - C256 - C512 (stride
    1) - a 1-channel conv, 4x4 kernels, padding 1, LeakyReLU 0.2; with `num_conditions` > 0 the
    condition is tiled over the image as extra input channels (D_Y; D_X has none).

The width multiplier scales every hidden channel count; the image channels and K do not. Both
networks are fully convolutional, so 32, 64 and 128 px use the same layers.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fergan.models.layers import (
    Dtype,
    ResidualBlock,
    conv_in_relu,
    instance_norm,
    scaled,
    tile_code,
)

# CycleGAN's resnet_6blocks at ngf = 64: stem, the two stride-2 stages, residual blocks.
STEM_CHANNELS = 64
DOWN_CHANNELS = (128, 256)
NUM_RESIDUAL_BLOCKS = 6
# The 70x70 PatchGAN at ndf = 64: the stride-2 convs, then the stride-1 conv before the output.
PATCH_CHANNELS = (64, 128, 256)
PATCH_LAST_CHANNELS = 512
PATCH_LRELU_SLOPE = 0.2


class ResnetGenerator(nn.Module):
    """G(x, z): x [B, S, S, c] in [-1, 1] and a code z [B, K] (one-hot expression) -> a face
    [B, S, S, c] in (-1, 1), float32. S must be a multiple of 4."""

    width: float = 1.0
    channels: int = 3
    num_classes: int = 7
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, code: jax.Array) -> jax.Array:
        if code.shape[-1] != self.num_classes:
            raise ValueError(f"code has {code.shape[-1]} entries, expected {self.num_classes}.")
        h = conv_in_relu(x.astype(self.dtype), scaled(STEM_CHANNELS, self.width), 7, 1, "stem",
                         self.dtype)  # fmt: skip
        for i, ch in enumerate(DOWN_CHANNELS):
            h = conv_in_relu(h, scaled(ch, self.width), 3, 2, f"down{i}", self.dtype)
        bottleneck = h.shape[-1]
        h = conv_in_relu(tile_code(h, code), bottleneck, 3, 1, "fuse", self.dtype)
        for i in range(NUM_RESIDUAL_BLOCKS):
            h = ResidualBlock(self.dtype, name=f"res{i}")(h)
        for i, ch in enumerate((*reversed(DOWN_CHANNELS[:-1]), STEM_CHANNELS)):
            h = nn.ConvTranspose(
                scaled(ch, self.width),
                (3, 3),
                strides=(2, 2),
                padding="SAME",
                use_bias=False,
                name=f"up{i}_conv",
                dtype=self.dtype,
            )(h)
            h = nn.relu(instance_norm(f"up{i}_norm", self.dtype)(h))
        out = nn.Conv(self.channels, (7, 7), padding=3, name="out", dtype=self.dtype)(h)
        return jnp.tanh(out).astype(jnp.float32)


class PatchDiscriminator(nn.Module):
    """LSGAN critic: x [B, S, S, c] (and a code [B, num_conditions] when conditional) -> one
    score per patch [B, P, P], float32 (P = S/8 - 2: 14 at 128 px, 2 at 32)."""

    width: float = 1.0
    num_conditions: int = 0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, code: jax.Array | None = None) -> jax.Array:
        if (code is None) != (self.num_conditions == 0):
            raise ValueError(
                f"PatchDiscriminator(num_conditions={self.num_conditions}) got "
                f"{'no' if code is None else 'a'} condition."
            )
        if code is not None:
            x = tile_code(x, code)
        h = x.astype(self.dtype)
        for i, ch in enumerate(PATCH_CHANNELS):
            conv = nn.Conv(scaled(ch, self.width), (4, 4), strides=2, padding=1,
                           use_bias=i == 0, name=f"conv{i}", dtype=self.dtype)  # fmt: skip
            h = conv(h)
            if i:
                h = instance_norm(f"norm{i}", self.dtype)(h)
            h = nn.leaky_relu(h, PATCH_LRELU_SLOPE)
        h = nn.Conv(scaled(PATCH_LAST_CHANNELS, self.width), (4, 4), padding=1, use_bias=False,
                    name="conv3", dtype=self.dtype)(h)  # fmt: skip
        h = nn.leaky_relu(instance_norm("norm3", self.dtype)(h), PATCH_LRELU_SLOPE)
        out = nn.Conv(1, (4, 4), padding=1, name="out", dtype=self.dtype)(h)
        return out[..., 0].astype(jnp.float32)
