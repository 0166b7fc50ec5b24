"""Recognition network R = Rcls(Rext(x)), Table II.

The LightCNN trunk of Rext is frozen and its parameters live with the identity network, outside
every optimizer (the paper); this module holds only R's head: the Rext head on the trunk output
and Rcls. With `recognizer.trunk` 'finetune' R trains its own copy of the trunk beside this head
(`fergan.methods.fesr.state.r_trunk_params`).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fergan.models.layers import Dtype, flatten, scaled

DROPOUT_RATE = 0.5


def rext_feature_dim(width: float) -> int:
    """Size of the Rext feature (512 at width 1)."""
    return scaled(512, width)


class RecognizerHead(nn.Module):
    """Trunk output [B, S/8, S/8, C] -> (Rext feature [B, 512*width], logits [B, K])."""

    width: float = 1.0
    num_classes: int = 7
    dtype: Dtype = jnp.float32

    def setup(self):
        conv = lambda ch: nn.Conv(
            scaled(ch, self.width),
            (3, 3),
            strides=(2, 2),
            padding=((1, 1), (1, 1)),
            dtype=self.dtype,
        )
        self.conv1 = conv(256)
        self.conv2 = conv(512)
        self.fc1 = nn.Dense(scaled(2048, self.width), dtype=self.dtype)
        self.fc2 = nn.Dense(rext_feature_dim(self.width), dtype=self.dtype)
        self.cls = nn.Dense(self.num_classes, dtype=self.dtype)

    def extract(self, trunk_out: jax.Array) -> jax.Array:
        """Rext head: the 512-d feature used by the intra-class loss (Eq. 14)."""
        h = nn.relu(self.conv2(nn.relu(self.conv1(trunk_out.astype(self.dtype)))))
        return nn.relu(self.fc2(nn.relu(self.fc1(flatten(h))))).astype(jnp.float32)

    def classify(self, feature: jax.Array, keep_mask: jax.Array | None = None) -> jax.Array:
        """Rcls: Dropout(0.5) -> Dense K. `keep_mask` [B, F] (1 = keep) is drawn per sample by the
        caller so results do not depend on how the batch is split over devices; None = eval."""
        if keep_mask is not None:
            feature = feature * keep_mask / (1.0 - DROPOUT_RATE)
        return self.cls(feature.astype(self.dtype)).astype(jnp.float32)

    def __call__(self, trunk_out: jax.Array, keep_mask: jax.Array | None = None):
        feature = self.extract(trunk_out)
        return feature, self.classify(feature, keep_mask)
