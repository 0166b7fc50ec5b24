"""LSSL networks: the encoder-decoder generator (paper A, Table I) and the PatchGAN
discriminator with an expression head (Table II).

Sizes. The tables are written for 128 px. Smaller images drop the deepest stages, so every
size ends on the same grid and the channel counts of the remaining stages match the tables:
  * generator: stride-2 stages = log2(S) - 3 (4 at 128, 3 at 64, 2 at 32), so the bottleneck is
    always 8x8 (h/16 at 128); the decoder has as many x2 stages, mirrored, so 64 px runs
    64 -> 128 -> 256 -> 512 (6 RBs) -> 256 -> 128 -> 64.
  * discriminator: stride-2 stages = log2(S) - 1 (6 at 128, 5 at 64, 4 at 32), so the last map is
    always 2x2 (h/64 at 128); 64 px ends at 1024 channels, 32 px at 512.
The width multiplier scales every hidden channel count (`scaled`); the image/side channels and the
class count are not scaled.

Where the tables are silent (the choices the parameter-count tests pin down):
  * residual block: two 3x3 convs, x + IN(Conv(ReLU(IN(Conv(x))))), the StarGAN block whose
    table format Table I copies (one listed row per block); no ReLU after the sum;
  * a conv followed by the affine instance norm has no bias (the norm's shift replaces it); the
    7x7 tanh heads and every discriminator conv (no normalisation there) keep theirs;
  * sub-pixel conv: a 3x3/1 conv to 4*C channels, then depth-to-space x2 to C channels (Shi et
    al.'s ESPCN layer; Table I's "stride 2" is the x2 factor), then IN + ReLU on the C channels;
  * the expression code is tiled over the 8x8 latent and concatenated before the first sub-pixel
    conv (Table I's "1024 + ny" input; B, text of Fig. 11: "spatially replicated and concatenated");
  * LeakyReLU slope 0.01 (A gives none; StarGAN's discriminator, which Table II follows, uses it);
  * the classification head is a dense layer on the flattened last map (Table II's "FC m").
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fergan.models.layers import (
    Dtype,
    ResidualBlock,
    conv_in_relu,
    flatten,
    instance_norm,
    num_halvings,
    scaled,
    tile_code,
)

# Table I at 128 px: the 7x7 stem, then the stride-2 stages' output channels.
_STEM_CHANNELS = 64
_DOWN_CHANNELS = (128, 256, 512, 1024)
_NUM_RESIDUAL_BLOCKS = 6
# Table II at 128 px: output channels of the six stride-2 convs.
_DISC_CHANNELS = (64, 128, 256, 512, 1024, 2048)
DISC_LRELU_SLOPE = 0.01


def generator_stages(image_size: int) -> int:
    """Number of stride-2 encoder stages (= x2 decoder stages): 4 at 128, 3 at 64, 2 at 32."""
    return num_halvings(image_size) - 3


def encoder_channels(image_size: int, width: float) -> tuple[int, ...]:
    """Genc widths: the 7x7 stem, then one entry per stride-2 stage (128: 64, 128, ..., 1024)."""
    widths = (_STEM_CHANNELS, *_DOWN_CHANNELS[: generator_stages(image_size)])
    return tuple(scaled(c, width) for c in widths)


def decoder_channels(image_size: int, width: float) -> tuple[int, ...]:
    """Gdec sub-pixel stage widths: Genc's mirrored (128: 512, 256, 128, 64)."""
    return tuple(reversed(encoder_channels(image_size, width)[:-1]))


def disc_channels(image_size: int, width: float) -> tuple[int, ...]:
    """Discriminator stage widths: one per stride-2 conv, down to a 2x2 map."""
    return tuple(scaled(c, width) for c in _DISC_CHANNELS[: num_halvings(image_size) - 1])


def depth_to_space(x: jax.Array, factor: int = 2) -> jax.Array:
    """[B, H, W, C*f*f] -> [B, H*f, W*f, C], channel c*f*f + i*f + j going to offset (i, j).

    The channel order is PyTorch's PixelShuffle (ESPCN), so the layer reads like the paper's.
    """
    b, h, w, cff = x.shape
    c = cff // (factor * factor)
    x = x.reshape(b, h, w, c, factor, factor)
    x = x.transpose(0, 1, 4, 2, 5, 3)  # [B, H, i, W, j, C]
    return x.reshape(b, h * factor, w * factor, c)


class LsslEncoder(nn.Module):
    """Genc: the (x, s) stack [B, S, S, c_in] -> latent h [B, 8, 8, n] (Table I, upper half)."""

    image_size: int
    width: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        stem, *downs = encoder_channels(self.image_size, self.width)
        x = conv_in_relu(x, stem, 7, 1, "enc0", self.dtype)
        for i, ch in enumerate(downs, start=1):
            x = conv_in_relu(x, ch, 4, 2, f"enc{i}", self.dtype)
        for i in range(_NUM_RESIDUAL_BLOCKS):
            x = ResidualBlock(self.dtype, name=f"res{i}")(x)
        return x.astype(jnp.float32)


class LsslDecoder(nn.Module):
    """Gdec: h [B, 8, 8, n] and code [B, K] -> (x' [B, S, S, c], s' or None) (Table I, lower)."""

    image_size: int
    width: float = 1.0
    channels: int = 3
    side: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array, code: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        x = tile_code(h.astype(self.dtype), code)
        for i, ch in enumerate(decoder_channels(self.image_size, self.width)):
            # 4*C before the shuffle, so each of the 2x2 output offsets gets its own C channels.
            x = nn.Conv(
                4 * ch, (3, 3), padding=1, use_bias=False, name=f"dec{i}_conv", dtype=self.dtype
            )(x)
            x = nn.relu(instance_norm(f"dec{i}_norm", self.dtype)(depth_to_space(x)))

        def head(name):
            y = nn.Conv(self.channels, (7, 7), padding=3, name=name, dtype=self.dtype)(x)
            return jnp.tanh(y).astype(jnp.float32)

        return head("image_out"), (head("side_out") if self.side else None)


class LsslGenerator(nn.Module):
    """G = (Genc, Gdec) of Table I: (x, s) and a target expression code -> (x', s').

    x, s: [B, S, S, c] in [-1, 1] (s is the landmark heatmap, as many channels as x; absent when
    `side` is False). The code is [B, K]: one-hot y, or any K-dim code. The latent h = Genc(x, s)
    is [B, 8, 8, n] (n = 1024 * width at 128 px). Outputs are float32 in (-1, 1).
    """

    image_size: int
    width: float = 1.0
    channels: int = 3
    num_classes: int = 7
    side: bool = True
    dtype: Dtype = jnp.float32

    def setup(self):
        self.enc = LsslEncoder(self.image_size, self.width, self.dtype)
        self.dec = LsslDecoder(self.image_size, self.width, self.channels, self.side, self.dtype)

    def encode(self, x: jax.Array, s: jax.Array | None = None) -> jax.Array:
        """Genc: x [B, S, S, c] (and s [B, S, S, c] with side) -> h [B, 8, 8, n]."""
        if self.side:
            if s is None:
                raise ValueError("LsslGenerator(side=True) needs the side image s.")
            x = jnp.concatenate([x, s], axis=-1)  # Table I's (h, w, 6) input
        return self.enc(x)

    def decode(self, h: jax.Array, code: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """Gdec: h [B, 8, 8, n] and code [B, K] -> (x' [B, S, S, c], s' [B, S, S, c] or None)."""
        if code.shape[-1] != self.num_classes:
            raise ValueError(f"code has {code.shape[-1]} entries, expected {self.num_classes}.")
        return self.dec(h, code)

    def __call__(
        self, x: jax.Array, s: jax.Array | None, code: jax.Array
    ) -> tuple[jax.Array, jax.Array | None]:
        """Gdec(Genc(x, s), code) -> (x', s')."""
        return self.decode(self.encode(x, s), code)


class LsslDiscriminator(nn.Module):
    """PatchGAN critic with an expression classifier (Table II).

    Input x [B, S, S, c], concatenated with its side image s [B, S, S, c] when given (Table II's
    6 channels for RGB). Returns (patches [B, 2, 2]: one critic value per patch of the last map,
    logits [B, K]), float32.
    """

    image_size: int
    width: float = 1.0
    num_classes: int = 7
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, s: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        if s is not None:
            x = jnp.concatenate([x, s], axis=-1)
        x = x.astype(self.dtype)
        for i, ch in enumerate(disc_channels(self.image_size, self.width)):
            x = nn.Conv(ch, (4, 4), strides=2, padding=1, name=f"conv{i}", dtype=self.dtype)(x)
            x = nn.leaky_relu(x, DISC_LRELU_SLOPE)
        patches = nn.Conv(1, (3, 3), padding=1, name="adv", dtype=self.dtype)(x)
        logits = nn.Dense(self.num_classes, name="cls", dtype=self.dtype)(flatten(x))
        return patches[..., 0].astype(jnp.float32), logits.astype(jnp.float32)
