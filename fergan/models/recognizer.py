"""Recognition network R = Rcls(Rext(x)), Table II.

The LightCNN trunk of Rext is frozen and its parameters live with the identity network, outside
every optimizer; this module holds only R's trainable part: the Rext head on the trunk output and
Rcls.
"""

import flax.linen as nn
import jax

from fergan.models.layers import flatten, scaled

DROPOUT_RATE = 0.5


def rext_feature_dim(width: float) -> int:
    """Size of the Rext feature (512 at width 1)."""
    return scaled(512, width)


class RecognizerHead(nn.Module):
    """Trunk output [B, S/8, S/8, C] -> (Rext feature [B, 512*width], logits [B, K])."""

    width: float = 1.0
    num_classes: int = 7

    def setup(self):
        self.conv1 = nn.Conv(
            scaled(256, self.width), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))
        )
        self.conv2 = nn.Conv(
            scaled(512, self.width), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))
        )
        self.fc1 = nn.Dense(scaled(2048, self.width))
        self.fc2 = nn.Dense(rext_feature_dim(self.width))
        self.cls = nn.Dense(self.num_classes)

    def extract(self, trunk_out: jax.Array) -> jax.Array:
        """Rext head: the 512-d feature used by the intra-class loss (Eq. 14)."""
        h = nn.relu(self.conv2(nn.relu(self.conv1(trunk_out))))
        return nn.relu(self.fc2(nn.relu(self.fc1(flatten(h)))))

    def classify(self, feature: jax.Array, keep_mask: jax.Array | None = None) -> jax.Array:
        """Rcls: Dropout(0.5) -> Dense K. `keep_mask` [B, F] (1 = keep) is drawn per sample by the
        caller so results do not depend on how the batch is split over devices; None = eval."""
        if keep_mask is not None:
            feature = feature * keep_mask / (1.0 - DROPOUT_RATE)
        return self.cls(feature)

    def __call__(self, trunk_out: jax.Array, keep_mask: jax.Array | None = None):
        feature = self.extract(trunk_out)
        return feature, self.classify(feature, keep_mask)
