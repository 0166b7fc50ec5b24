"""Building blocks shared by the networks of Tables I-II and by the methods' networks."""

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


def check_model_keys(model) -> None:
    """`model.channels` in (1, 3) and `model.width` > 0 (a config's `model` section); each error
    names its key."""
    if model.channels not in (1, 3):
        raise ValueError(f"model.channels={model.channels} is not supported; allowed: (1, 3)")
    if not model.width > 0:
        raise ValueError(f"model.width={model.width} must be > 0")


def lrelu(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, LRELU_SLOPE)


def num_halvings(image_size: int) -> int:
    """log2(image_size); validates the size against SUPPORTED_IMAGE_SIZES."""
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(
            f"model.image_size={image_size} is not supported; allowed: {SUPPORTED_IMAGE_SIZES}"
        )
    return int(math.log2(image_size))


_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv4s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Conv(4, 2) with padding 1: [B, H, W, Ci] x [4, 4, Ci, Co] -> [B, H/2, W/2, Co]."""
    return jax.lax.conv_general_dilated(
        x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_NHWC
    )


def _flip_io(kernel: jax.Array) -> jax.Array:
    """[4, 4, Ci, Co] -> [4, 4, Co, Ci], spatially flipped: the kernel of the transposed conv."""
    return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


def _conv4s2_kernel_grad(x: jax.Array, kernel: jax.Array, dy: jax.Array) -> jax.Array:
    """d<_conv4s2(x, kernel), dy>/d kernel: [4, 4, Ci, Co]."""
    return jax.vjp(lambda k: _conv4s2(x, k), kernel)[1](dy)[0]


# CPU-only workaround, measured (the other one, the gating choice, is in
# fergan/training/cpu_workarounds.py). Only XLA:CPU needs it; it is the same arithmetic on every
# platform, so it stays on everywhere. XLA:CPU runs the kernel gradient of an input-dilated
# convolution (what autodiff makes of a transposed convolution, and of the input gradient inside
# the WGAN-GP double backward) in a slow generic loop: 12.6 s against 0.5 s here for one 4x4/2
# up-convolution of the paper-size generator. The two functions below are each other's adjoint,
# and their custom VJPs express every derivative, to any order, as a strided forward convolution
# or its kernel gradient.
@jax.custom_vjp
def conv4s2_adjoint(dy: jax.Array, kernel: jax.Array) -> jax.Array:
    """Adjoint of `_conv4s2(., kernel)` applied to dy [B, H/2, W/2, Co] -> [B, H, W, Ci]."""
    # Written out rather than taken from jax.vjp, whose transpose rule reverses the kernel inside
    # the convolution; the explicit flip cancels against deconv4s2's (no reversal is left).
    flipped = _flip_io(kernel)
    if min(dy.shape[1:3]) > 2:
        return jax.lax.conv_general_dilated(
            dy, flipped, (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2), dimension_numbers=_NHWC
        )
    # A dilated input smaller than the kernel makes XLA swap the operands into a reversed
    # convolution that XLA:CPU runs in its slow loop (10x here); a materialised padded input
    # behind a barrier keeps the plain form.
    zero = jnp.zeros((), dy.dtype)
    padded = jax.lax.pad(dy, zero, ((0, 0, 0), (2, 2, 1), (2, 2, 1), (0, 0, 0)))
    padded = jax.lax.optimization_barrier(padded)
    return jax.lax.conv_general_dilated(padded, flipped, (1, 1), "VALID", dimension_numbers=_NHWC)


def _conv4s2_adjoint_fwd(dy, kernel):
    return conv4s2_adjoint(dy, kernel), (dy, kernel)


def _conv4s2_adjoint_bwd(residuals, g):
    dy, kernel = residuals
    # <adjoint(dy), g> = <conv(g), dy>: both cotangents are forward-convolution patterns.
    return _conv4s2(g, kernel), _conv4s2_kernel_grad(g, kernel, dy)


conv4s2_adjoint.defvjp(_conv4s2_adjoint_fwd, _conv4s2_adjoint_bwd)


@jax.custom_vjp
def conv4s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Conv(4, 2), padding 1, no bias: [B, H, W, Ci] x [4, 4, Ci, Co] -> [B, H/2, W/2, Co]."""
    return _conv4s2(x, kernel)


def _conv4s2_fwd(x, kernel):
    return _conv4s2(x, kernel), (x, kernel)


def _conv4s2_bwd(residuals, dy):
    x, kernel = residuals
    return conv4s2_adjoint(dy, kernel), _conv4s2_kernel_grad(x, kernel, dy)


conv4s2.defvjp(_conv4s2_fwd, _conv4s2_bwd)


def deconv4s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """DeConv(4, 2), as `nn.ConvTranspose(.., (4, 4), (2, 2), "SAME")`, no bias.

    [B, H, W, Ci] x [4, 4, Ci, Co] -> [B, 2H, 2W, Co]: the adjoint of Conv(4, 2) with the
    spatially flipped, in/out-swapped kernel. H and W even.
    """
    return conv4s2_adjoint(x, _flip_io(kernel))


class _Resample4x4(nn.Module):
    """A 4x4 stride-2 (de)convolution with the parameters and init of nn.Conv / nn.ConvTranspose."""

    features: int
    upsample: bool
    use_bias: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (4, 4, x.shape[-1], self.features)
        )
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        y = (deconv4s2 if self.upsample else conv4s2)(x, kernel)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
            y = y + bias.astype(y.dtype)
        return y


def down_conv(
    features: int, use_bias: bool = True, name: str | None = None, dtype: Dtype = jnp.float32
) -> nn.Module:
    """Conv(n, 4, 2) with padding 1: halves the spatial size (Table I)."""
    return _Resample4x4(features, upsample=False, use_bias=use_bias, name=name, dtype=dtype)


def up_conv(
    features: int, use_bias: bool = True, name: str | None = None, dtype: Dtype = jnp.float32
) -> nn.Module:
    """DeConv(n, 4, 2): doubles the spatial size (Table I)."""
    return _Resample4x4(features, upsample=True, use_bias=use_bias, name=name, dtype=dtype)


def instance_norm(name: str | None = None, dtype: Dtype = jnp.float32) -> nn.InstanceNorm:
    """Per-sample, per-channel normalisation with a learned affine (IN in Table I)."""
    return nn.InstanceNorm(epsilon=1e-5, name=name, dtype=dtype)


def flatten(x: jax.Array) -> jax.Array:
    """[B, ...] -> [B, prod(...)] in NHWC order."""
    return jnp.reshape(x, (x.shape[0], -1))


def tile_code(h: jax.Array, code: jax.Array) -> jax.Array:
    """Latent h [B, H, W, n] and code [B, K] -> [B, H, W, n + K], the code copied to every cell."""
    b, hh, ww, _ = h.shape
    tiled = jnp.broadcast_to(code[:, None, None, :].astype(h.dtype), (b, hh, ww, code.shape[-1]))
    return jnp.concatenate([h, tiled], axis=-1)


class ResidualBlock(nn.Module):
    """x + IN(Conv3(ReLU(IN(Conv3(x))))) at a fixed width: [B, H, W, C] -> [B, H, W, C]."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ch = x.shape[-1]
        y = nn.Conv(ch, (3, 3), padding=1, use_bias=False, name="conv0", dtype=self.dtype)(x)
        y = nn.relu(instance_norm("norm0", self.dtype)(y))
        y = nn.Conv(ch, (3, 3), padding=1, use_bias=False, name="conv1", dtype=self.dtype)(y)
        return x + instance_norm("norm1", self.dtype)(y)


def conv_in_relu(x, features, kernel, stride, name, dtype):
    """Conv (no bias: IN shifts) + IN + ReLU: [B, H, W, Ci] -> [B, H/stride, W/stride, C].
    Padding (k - 1) // 2: 3 for a 7x7/1 stem, 1 for 4x4/2 and 3x3/2 (exact halvings)."""
    pad = (kernel - 1) // 2
    x = nn.Conv(
        features,
        (kernel, kernel),
        strides=stride,
        padding=pad,
        use_bias=False,
        name=f"{name}_conv",
        dtype=dtype,
    )(x)
    return nn.relu(instance_norm(f"{name}_norm", dtype)(x))
