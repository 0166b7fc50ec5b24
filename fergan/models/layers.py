"""Building blocks shared by the networks of Tables I-II."""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

LRELU_SLOPE = 0.2  # SPEC "Networks".
SUPPORTED_IMAGE_SIZES = (32, 64, 128)
# Computation dtype of a module (parameters stay float32; outputs are cast back to float32).
Dtype = Any


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


def down_conv(
    features: int, use_bias: bool = True, name: str | None = None, dtype: Dtype = jnp.float32
) -> nn.Conv:
    """Conv(n, 4, 2) with padding 1: halves the spatial size (Table I)."""
    return nn.Conv(
        features,
        (4, 4),
        strides=(2, 2),
        padding=((1, 1), (1, 1)),
        use_bias=use_bias,
        name=name,
        dtype=dtype,
    )


def up_conv(
    features: int, use_bias: bool = True, name: str | None = None, dtype: Dtype = jnp.float32
) -> nn.ConvTranspose:
    """DeConv(n, 4, 2): doubles the spatial size (Table I)."""
    return nn.ConvTranspose(
        features, (4, 4), strides=(2, 2), padding="SAME", use_bias=use_bias, name=name, dtype=dtype
    )


def instance_norm(name: str | None = None, dtype: Dtype = jnp.float32) -> nn.InstanceNorm:
    """Per-sample, per-channel normalisation with a learned affine (IN in Table I)."""
    return nn.InstanceNorm(epsilon=1e-5, name=name, dtype=dtype)


def flatten(x: jax.Array) -> jax.Array:
    """[B, ...] -> [B, prod(...)] in NHWC order."""
    return jnp.reshape(x, (x.shape[0], -1))
