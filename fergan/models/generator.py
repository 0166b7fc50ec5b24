"""FESGAN generator G = (Genc, Gdec), Table I."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fergan.models.layers import (
    Dtype,
    down_conv,
    flatten,
    instance_norm,
    lrelu,
    num_halvings,
    scaled,
    up_conv,
)

# Channels of Genc's stride-2 stages at size 128; smaller images drop the deepest stages.
_ENCODER_CHANNELS = (64, 128, 256, 512, 1024)


def encoder_channels(image_size: int, width: float) -> tuple[int, ...]:
    """Genc stage widths: one stride-2 stage per halving down to 4x4 (128 -> 5 stages)."""
    stages = num_halvings(image_size) - 2
    return tuple(scaled(c, width) for c in _ENCODER_CHANNELS[:stages])


def decoder_channels(image_size: int, width: float) -> tuple[int, ...]:
    """Gdec hidden widths: Genc's reversed and halved (1024 -> 512, ..., 64 -> 32)."""
    return tuple(
        scaled(c // 2, width) for c in reversed(_ENCODER_CHANNELS[: num_halvings(image_size) - 2])
    )


class Genc(nn.Module):
    """Encoder: image [B, S, S, c] in [-1, 1] -> face code g(x) [B, n] in (-1, 1) (Eq. 1)."""

    image_size: int
    width: float = 1.0
    latent_dim: int = 64
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        # Convs feed an affine instance norm, so their bias would be cancelled: left out.
        for i, ch in enumerate(encoder_channels(self.image_size, self.width)):
            x = lrelu(
                instance_norm(f"norm{i}", self.dtype)(
                    down_conv(ch, use_bias=False, name=f"conv{i}", dtype=self.dtype)(x)
                )
            )
        code = nn.Dense(self.latent_dim, name="fc", dtype=self.dtype)(flatten(x))
        return jnp.tanh(code).astype(jnp.float32)


class Gdec(nn.Module):
    """Decoder: [g or z, u] [B, n + K] -> image [B, S, S, c] in (-1, 1) (Eq. 3)."""

    image_size: int
    width: float = 1.0
    channels: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, code: jax.Array) -> jax.Array:
        top = encoder_channels(self.image_size, self.width)[-1]
        x = nn.Dense(2 * 2 * top, name="fc", dtype=self.dtype)(code.astype(self.dtype)).reshape(
            code.shape[0], 2, 2, top
        )
        for i, ch in enumerate(decoder_channels(self.image_size, self.width)):
            x = nn.relu(
                instance_norm(f"norm{i}", self.dtype)(
                    up_conv(ch, use_bias=False, name=f"deconv{i}", dtype=self.dtype)(x)
                )
            )
        return jnp.tanh(up_conv(self.channels, name="out", dtype=self.dtype)(x)).astype(jnp.float32)


class Generator(nn.Module):
    """G: Genc and Gdec under one parameter tree (they share one optimizer, SPEC step 4)."""

    image_size: int
    width: float = 1.0
    channels: int = 1
    latent_dim: int = 64
    dtype: Dtype = jnp.float32

    def setup(self):
        self.enc = Genc(self.image_size, self.width, self.latent_dim, self.dtype)
        self.dec = Gdec(self.image_size, self.width, self.channels, self.dtype)

    def encode(self, x: jax.Array) -> jax.Array:
        """[B, S, S, c] -> g(x) [B, n]."""
        return self.enc(x)

    def decode(self, code: jax.Array, u: jax.Array) -> jax.Array:
        """Latent [B, n] and expression code u [B, K] -> image [B, S, S, c]."""
        return self.dec(jnp.concatenate([code, u], axis=-1))

    def __call__(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """Re-render x with the expression code u: Gdec([Genc(x), u])."""
        return self.decode(self.encode(x), u)
