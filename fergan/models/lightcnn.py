"""LightCNN-29 v2: the frozen identity network (Eq. 12) and the trunk of R (Table II).

Layer list of the published v2 network: conv1 = MFM 5x5 (48), then per level a stack of residual
blocks, a `group` (MFM 1x1 then MFM 3x3) and 2x2 max+avg pooling; `fc` gives the 256-d identity
feature and `fc2` the identity logits. Submodule names follow the release checkpoint so the
converter maps tensors by name (`block1_0` <-> `block1.0`).

`version=1` is the earlier release (`network_29layers`): same convolutions, but plain 2x2 max
pooling, an MFM `fc` (Dense to 2*256, then the max of the halves, as `fc.filter`) and a biased
`fc2`. The default `version=2` tree is unaffected by the switch.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fergan.models.layers import Dtype, flatten, scaled

# (residual blocks, group output channels) per level; the input width of level i is the output of
# level i-1 (conv1 gives 48).
_LEVELS = ((1, 96), (2, 192), (3, 128), (4, 128))
_CONV1_CHANNELS = 48
_FEATURE_DIM = 256


class MFM(nn.Module):
    """Max-Feature-Map: a conv with 2n outputs, then the element-wise max of the two halves."""

    features: int
    kernel: int = 3
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = self.kernel // 2
        y = nn.Conv(
            2 * self.features,
            (self.kernel, self.kernel),
            padding=((pad, pad), (pad, pad)),
            name="filter",
            dtype=self.dtype,
        )(x)
        first, second = jnp.split(y, 2, axis=-1)
        return jnp.maximum(first, second)


class ResBlock(nn.Module):
    """Two MFM 3x3 convs with an identity shortcut."""

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = MFM(self.features, 3, self.dtype, name="conv1")(x)
        return MFM(self.features, 3, self.dtype, name="conv2")(y) + x


class Group(nn.Module):
    """MFM 1x1 (same width) followed by MFM 3x3 to `features` channels."""

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = MFM(x.shape[-1], 1, self.dtype, name="conv_a")(x)
        return MFM(self.features, 3, self.dtype, name="conv")(x)


_WINDOW_AXES = (2, 4)


def _windows2x2(x: jax.Array) -> jax.Array:
    """[B, H, W, C] (H, W even) -> [B, H/2, 2, W/2, 2, C]: the 2x2/2 pooling windows."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c)


# 2x2/2 pooling as a reduction over reshaped windows: its gradient costs half that of
# nn.max_pool's select-and-scatter on CPU (the R and identity-loss backward passes use it).
def max_pool(x: jax.Array) -> jax.Array:
    """2x2/2 max-pool: [B, H, W, C] -> [B, H/2, W/2, C]."""
    return jnp.max(_windows2x2(x), axis=_WINDOW_AXES)


def max_avg_pool(x: jax.Array) -> jax.Array:
    """v2 pooling: 2x2/2 max-pool + 2x2/2 avg-pool."""
    windows = _windows2x2(x)
    return jnp.max(windows, axis=_WINDOW_AXES) + jnp.mean(windows, axis=_WINDOW_AXES)


class MFMDense(nn.Module):
    """v1 `fc`: Dense to 2n outputs (`filter`), then the max of the two halves."""

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.Dense(2 * self.features, name="filter", dtype=self.dtype)(x)
        first, second = jnp.split(y, 2, axis=-1)
        return jnp.maximum(first, second)


def to_lightcnn_input(x: jax.Array) -> jax.Array:
    """[B, H, W, c] in [-1, 1] -> [B, H, W, 1] in [0, 1] (RGB -> luminance first; SPEC)."""
    if x.shape[-1] == 3:
        x = x @ jnp.asarray([0.299, 0.587, 0.114], x.dtype)[:, None]
    return (x + 1.0) * 0.5


class LightCNN29(nn.Module):
    """LightCNN-29 (v2 by default) on [B, S, S, 1] images in [0, 1].

    `trunk` is conv1..pool3 ([B, S/8, S/8, 192*width], the frozen part of Rext); `__call__`
    returns (identity logits [B, num_classes], feature F_id [B, 256*width]). `version` 1 selects
    the `network_29layers` layout (module docstring).
    """

    width: float = 1.0
    num_classes: int = 80013
    version: int = 2
    dtype: Dtype = jnp.float32

    def setup(self):
        if self.version not in (1, 2):
            raise ValueError(f"LightCNN29 version must be 1 or 2, got {self.version}.")
        self.conv1 = MFM(scaled(_CONV1_CHANNELS, self.width), 5, self.dtype)
        blocks, groups = {}, {}
        in_ch = scaled(_CONV1_CHANNELS, self.width)
        for level, (n_blocks, out_ch) in enumerate(_LEVELS, start=1):
            for b in range(n_blocks):
                blocks[f"block{level}_{b}"] = ResBlock(in_ch, self.dtype, name=f"block{level}_{b}")
            groups[level] = Group(scaled(out_ch, self.width), self.dtype, name=f"group{level}")
            in_ch = scaled(out_ch, self.width)
        self.blocks = blocks
        self.groups = groups
        feature_dim = scaled(_FEATURE_DIM, self.width)
        if self.version == 2:
            self.fc = nn.Dense(feature_dim, dtype=self.dtype)
        else:
            self.fc = MFMDense(feature_dim, self.dtype)
        self.fc2 = nn.Dense(self.num_classes, use_bias=self.version == 1, dtype=self.dtype)

    def _pool(self, x: jax.Array) -> jax.Array:
        if self.version == 1:
            return max_pool(x)
        return max_avg_pool(x)

    def _level(self, x: jax.Array, level: int) -> jax.Array:
        n_blocks = _LEVELS[level - 1][0]
        for b in range(n_blocks):
            x = self.blocks[f"block{level}_{b}"](x)
        return self.groups[level](x)

    def trunk(self, x: jax.Array) -> jax.Array:
        """conv1..pool3: [B, S, S, 1] -> [B, S/8, S/8, 192*width]."""
        x = self._pool(self.conv1(x.astype(self.dtype)))
        x = self._pool(self._level(x, 1))
        return self._pool(self._level(x, 2)).astype(jnp.float32)

    def head(self, trunk_out: jax.Array) -> jax.Array:
        """Rest of the network after pool3 -> 256-d feature F_id."""
        x = self._level(trunk_out.astype(self.dtype), 3)
        x = self._pool(self._level(x, 4))
        return self.fc(flatten(x)).astype(jnp.float32)

    def identity_feature(self, x: jax.Array) -> jax.Array:
        """F_id(x) [B, 256*width] (Eq. 12)."""
        return self.head(self.trunk(x))

    def features(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One pass giving (trunk output, F_id) so callers that need both share the trunk."""
        t = self.trunk(x)
        return t, self.head(t)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        feature = self.identity_feature(x)
        return self.fc2(feature).astype(jnp.float32), feature
