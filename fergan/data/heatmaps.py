"""Face landmark heatmaps: the side image s of LSSL (paper A, Sec. III: "2D Gaussians centred at
the landmarks' locations", concatenated channel-wise with the face), and the horizontal flip that
keeps a face and its landmarks in step (A's only augmentation).

Pixel convention: (x, y) landmarks in pixels with pixel centres at integers 0 .. size-1, as in
`fergan.data.align`.
"""

import numpy as np

from fergan.data.align import NUM_LANDMARKS

# 0-based indices of the jaw line in the 68-point scheme. Left out of the heatmap: the outline
# says little about the expression and its Gaussians would frame the face in a bright ring.
JAW = slice(0, 17)
# Gaussian spread at 128 px (pixels); other sizes scale it with the image.
SIGMA_AT_128 = 5.0


def default_sigma(size: int) -> float:
    """sigma = 5 * size / 128 px: the same spread relative to the face at every image size."""
    return SIGMA_AT_128 * size / 128.0


def landmark_heatmap(
    landmarks: np.ndarray, size: int, channels: int = 1, sigma: float | None = None
) -> np.ndarray:
    """Renders the side image of a face from its 68 landmarks.

    One isotropic Gaussian exp(-d^2 / (2 sigma^2)) per non-jaw landmark (51 of them), summed. The
    sum is clipped to [0, 1] (so nearby points, e.g. around the eyes or lips, saturate at 1 rather
    than stretching the range) and mapped to [-1, 1] as 2 h - 1, the range of the images it is
    stacked with: background -1, a landmark's centre ~1. NaN landmarks (unknown) contribute
    nothing.

    Args:
      landmarks: [68, 2] (x, y) pixel coordinates in the size x size image.
      size: image side S.
      channels: copies along the last axis (as many as the image, so s matches x).
      sigma: Gaussian std in pixels; default `default_sigma(size)`.

    Returns:
      float32 [S, S, channels] in [-1, 1].
    """
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must be [{NUM_LANDMARKS}, 2], got {landmarks.shape}.")
    sigma = default_sigma(size) if sigma is None else float(sigma)
    points = np.delete(landmarks, np.arange(NUM_LANDMARKS)[JAW], axis=0)  # [51, 2]
    points = points[np.isfinite(points).all(axis=1)]
    grid = np.arange(size, dtype=np.float64)
    # The 2D Gaussian factorises into x and y parts: [P, S] each, then one contraction over P
    # gives the [S(y), S(x)] sum without a [P, S, S] intermediate.
    gx = np.exp(-((grid[None, :] - points[:, :1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((grid[None, :] - points[:, 1:]) ** 2) / (2 * sigma**2))
    total = gy.T @ gx
    heat = 2.0 * np.clip(total, 0.0, 1.0) - 1.0
    return np.repeat(heat[:, :, None], channels, axis=2).astype(np.float32)


def flip_face(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirrors a face and its landmarks left-right: x -> S - 1 - x.

    Args:
      image: [S, S] or [S, S, c].
      landmarks: [68, 2] (x, y) pixel coordinates.

    Returns:
      (image flipped along its width, landmarks [68, 2] with mirrored x). The landmark order is
      kept, so index 36 (the eye on the image's left) now sits on the image's right; the heatmap
      does not care (a sum over points), a consumer of named points would need the 68-point
      mirror permutation.
    """
    size = image.shape[1]
    flipped = np.asarray(landmarks).copy()
    flipped[:, 0] = size - 1 - flipped[:, 0]
    return image[:, ::-1].copy(), flipped


def _mirror_order() -> np.ndarray:
    """int [68]: point i of a mirrored face is point order[i] of the original (iBUG 68 scheme)."""
    # Mirror pairs; the points on the midline (nose bridge 27-30, 33, 51, 57, 62, 66, chin 8)
    # map to themselves.
    pairs = [(i, 16 - i) for i in range(8)]  # Jaw.
    pairs += [(17 + i, 26 - i) for i in range(5)]  # Brows.
    pairs += [(31, 35), (32, 34)]  # Nostrils.
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # Eyes.
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # Outer lip.
    pairs += [(60, 64), (61, 63), (65, 67)]  # Inner lip.
    order = np.arange(68)
    for a, b in pairs:
        order[a], order[b] = b, a
    return order


MIRROR_ORDER = _mirror_order()


def flip_named_face(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`flip_face`, with the points renumbered so each keeps its name (point 36 stays the outer
    corner of the eye on the image's left): for consumers of the coordinates themselves."""
    image, flipped = flip_face(image, landmarks)
    return image, flipped[MIRROR_ORDER]
