"""Evaluation measures: image quality (Table III) and recognition (Table V, Fig. 8). Identity
verification (Table IV) lives with the identity network: fergan.identity.verification.

Image metrics are JAX functions over NHWC batches so they can run inside jitted evaluation
loops; recognition metrics work on host-side NumPy arrays gathered after
inference.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "psnr",
    "ssim",
]


# ---------------------------------------------------------------------------------------------
# Image quality
# ---------------------------------------------------------------------------------------------


def _as_float_batch(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim != 4:
        raise ValueError(f"expected [B, H, W, C] images, got shape {a.shape}")
    dtype = jnp.result_type(a.dtype, b.dtype, jnp.float32)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.float32
    return a.astype(dtype), b.astype(dtype)


@jax.jit
def psnr(a: jax.Array, b: jax.Array, data_range: float = 2.0) -> jax.Array:
    """Peak signal-to-noise ratio per image, in dB.

    Args:
        a, b: images [B, H, W, C]; [-1, 1] by default.
        data_range: max minus min of the value range (2 for [-1, 1], 255 for uint8).

    Returns:
        [B] PSNR values, ``10 * log10(data_range**2 / MSE)``; ``inf`` for identical images.
    """
    a, b = _as_float_batch(a, b)
    mse = jnp.mean(jnp.square(a - b), axis=(1, 2, 3))
    return 10.0 * jnp.log10(jnp.square(data_range) / mse)


def _gaussian_kernel_1d(win_size: int, sigma: float) -> np.ndarray:
    # Same taps as scipy.ndimage's Gaussian filter: exp(-x^2 / 2 sigma^2) on the integer grid,
    # normalised to sum 1 over the window.
    radius = (win_size - 1) // 2
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _filter_valid(x: jax.Array, k1d: np.ndarray) -> jax.Array:
    """Separable Gaussian filter of x [N, H, W, 1], VALID padding -> [N, H-w+1, W-w+1, 1]."""
    k = jnp.asarray(k1d, dtype=x.dtype)
    w = k.shape[0]
    dn = ("NHWC", "HWIO", "NHWC")
    # HIGHEST keeps accelerators from dropping to bf16/tf32 passes, which would cost the
    # 1e-4 agreement with the float64 reference.
    conv = functools.partial(
        jax.lax.conv_general_dilated,
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=dn,
        precision=jax.lax.Precision.HIGHEST,
    )
    x = conv(x, k.reshape(w, 1, 1, 1))
    return conv(x, k.reshape(1, w, 1, 1))


@functools.partial(jax.jit, static_argnames=("win_size", "sigma"))
def ssim(
    a: jax.Array,
    b: jax.Array,
    data_range: float = 2.0,
    *,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """Structural similarity per image (Wang et al. 2004), mean over pixels and channels.

    Gaussian-weighted window (``sigma`` 1.5, ``win_size`` 11), population covariances. Matches
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, channel_axis=-1)``: skimage filters the whole image and then
    discards ``(win_size - 1) // 2`` border pixels before averaging; the kept pixels are exactly
    those whose window lies inside the image, so a VALID-padded filter gives the same values
    without any border mode.

    Args:
        a, b: images [B, H, W, C] with H, W >= win_size; [-1, 1] by default.
        data_range: max minus min of the value range (2 for [-1, 1]).
        win_size: odd window side; skimage derives 11 from sigma 1.5 (truncate 3.5).
        sigma: Gaussian standard deviation in pixels.
        k1, k2: stabilising constants, C1 = (k1 * data_range)^2, C2 = (k2 * data_range)^2.

    Returns:
        [B] SSIM values.
    """
    if win_size % 2 != 1:
        raise ValueError(f"win_size must be odd, got {win_size}")
    a, b = _as_float_batch(a, b)
    B, H, W, C = a.shape
    if min(H, W) < win_size:
        raise ValueError(f"images {H}x{W} are smaller than the {win_size}x{win_size} window")
    k = _gaussian_kernel_1d(win_size, sigma)

    # Channels are scored independently: fold them into the batch as single-channel images.
    def to_planes(x: jax.Array) -> jax.Array:
        return jnp.transpose(x, (0, 3, 1, 2)).reshape(B * C, H, W, 1)

    x, y = to_planes(a), to_planes(b)
    # One filter call over all five moment maps.
    stacked = jnp.concatenate([x, y, x * x, y * y, x * y], axis=0)
    mx, my, mxx, myy, mxy = jnp.split(_filter_valid(stacked, k), 5, axis=0)
    vx = mxx - mx * mx
    vy = myy - my * my
    vxy = mxy - mx * my
    c1 = jnp.square(k1 * data_range)
    c2 = jnp.square(k2 * data_range)
    s_map = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    per_plane = jnp.mean(s_map, axis=(1, 2, 3))
    return jnp.mean(per_plane.reshape(B, C), axis=1)


# ---------------------------------------------------------------------------------------------
# Recognition
# ---------------------------------------------------------------------------------------------


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class).

    Args:
        labels: [N] integer true classes in [0, num_classes).
        preds: [N] integer predicted classes in [0, num_classes).
        num_classes: K.

    Returns:
        [K, K] int64 matrix; row = true class, column = predicted class.
    """
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    preds = np.asarray(preds).astype(np.int64).reshape(-1)
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ in length")
    for name, v in (("labels", labels), ("preds", preds)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} outside [0, {num_classes})")
    flat = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix.

    Args:
        cm: [K, K] counts, rows = true class.

    Returns:
        [K] float64: diagonal over row sums; NaN for a class with no samples (there is no
        accuracy to report, and 0 would look like a failure).
    """
    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / totals, np.nan)


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    """Fraction of [N] predictions equal to the [N] labels (overall accuracy, in [0, 1])."""
    labels = np.asarray(labels).reshape(-1)
    preds = np.asarray(preds).reshape(-1)
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ in length")
    if labels.size == 0:
        raise ValueError("accuracy of an empty set")
    return float(np.mean(labels == preds))
