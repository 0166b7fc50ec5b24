"""FESGAN discriminators Dimg and Dz, Table I."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fergan.models.layers import Dtype, down_conv, flatten, lrelu, num_halvings, scaled

_BODY_CHANNELS = (64, 128, 256, 512)


def dimg_body_channels(image_size: int, width: float) -> tuple[int, ...]:
    """Dimg body widths: stride-2 stages down to 8x8 (128 -> 4 stages)."""
    return tuple(scaled(c, width) for c in _BODY_CHANNELS[: num_halvings(image_size) - 3])


class Dimg(nn.Module):
    """Image critic with an adversarial and a classification head.

    Input [B, S, S, c]. Returns (adv [B], logits [B, K]): the adversarial output is the mean of a
    4x4 patch map (WGAN critic value, Eqs. 4-5); the logits are Dcls (Eqs. 8-9).
    """

    image_size: int
    width: float = 1.0
    num_classes: int = 7
    with_cls_head: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        x = x.astype(self.dtype)
        for i, ch in enumerate(dimg_body_channels(self.image_size, self.width)):
            x = lrelu(down_conv(ch, name=f"conv{i}", dtype=self.dtype)(x))
        patches = down_conv(1, name="adv", dtype=self.dtype)(x).astype(jnp.float32)
        adv = jnp.mean(patches, axis=(1, 2, 3))
        if not self.with_cls_head:
            return adv, None
        h = lrelu(down_conv(scaled(1024, self.width), name="cls_conv", dtype=self.dtype)(x))
        logits = nn.Conv(
            self.num_classes, (4, 4), padding="VALID", name="cls_out", dtype=self.dtype
        )(h)
        return adv, flatten(logits).astype(jnp.float32)


class Dz(nn.Module):
    """Latent discriminator: [B, n] -> logit [B] that the code came from the prior (Eqs. 6-7)."""

    width: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, code: jax.Array) -> jax.Array:
        h = code.astype(self.dtype)
        for i, units in enumerate((64, 32, 16)):
            h = lrelu(nn.Dense(scaled(units, self.width), name=f"fc{i}", dtype=self.dtype)(h))
        return nn.Dense(1, name="out", dtype=self.dtype)(h)[:, 0].astype(jnp.float32)
