"""Building blocks shared by the networks of Tables I-II."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

LRELU_SLOPE = 0.2  # SPEC "Networks".
SUPPORTED_IMAGE_SIZES = (32, 64, 128)


def scaled(channels: int, width: float) -> int:
    """Channel count `channels` scaled by the width multiplier (at least 1)."""
    return max(1, round(channels * width))


def lrelu(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, LRELU_SLOPE)


def num_halvings(image_size: int) -> int:
    """log2(image_size); validates the size against SUPPORTED_IMAGE_SIZES."""
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(
            f"model.image_size={image_size} is not supported; allowed: {SUPPORTED_IMAGE_SIZES}"
        )
    return int(math.log2(image_size))


def down_conv(features: int, use_bias: bool = True, name: str | None = None) -> nn.Conv:
    """Conv(n, 4, 2) with padding 1: halves the spatial size (Table I)."""
    return nn.Conv(
        features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=use_bias, name=name
    )


def up_conv(features: int, use_bias: bool = True, name: str | None = None) -> nn.ConvTranspose:
    """DeConv(n, 4, 2): doubles the spatial size (Table I)."""
    return nn.ConvTranspose(
        features, (4, 4), strides=(2, 2), padding="SAME", use_bias=use_bias, name=name
    )


def instance_norm(name: str | None = None) -> nn.InstanceNorm:
    """Per-sample, per-channel normalisation with a learned affine (IN in Table I)."""
    return nn.InstanceNorm(epsilon=1e-5, name=name)


def flatten(x: jax.Array) -> jax.Array:
    """[B, ...] -> [B, prod(...)] in NHWC order."""
    return jnp.reshape(x, (x.shape[0], -1))
