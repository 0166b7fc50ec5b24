"""Face masks from landmarks: the face region M of ECGAN's face-mask loss (paper ecgan Sec. 3.1,
Fig. 2: landmarks, then morphology so that the mask covers the whole face).

The paper takes OpenFace landmarks and a set of morphological operations. Here: the filled convex
hull of the jaw line and of the brows lifted towards the forehead, dilated by a disk. Pixel
convention as in `fergan.data.align`: (x, y) pixels, centres at 0 .. size-1.
"""

import numpy as np
from scipy import spatial
from skimage import draw, morphology

from fergan.data.align import NUM_LANDMARKS

JAW = slice(0, 17)
BROWS = slice(17, 27)
# The brows are lifted by this fraction of the brow-to-chin height to reach the hairline.
FOREHEAD_LIFT = 0.35
# Dilation radius at 128 px (pixels); other sizes scale it with the image.
DILATION_AT_128 = 4.0


def landmark_face_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The face region of a size x size image from its 68 landmarks.

    Args:
      landmarks: float [68, 2] (x, y) pixels; NaN where unknown.
      size: image side S.

    Returns:
      bool [S, S]. True inside the hull of the jaw points and of the brow points moved up by
      FOREHEAD_LIFT of the brow-to-chin height, dilated by DILATION_AT_128 * S / 128 px. With
      any of those points unknown, every pixel is True: no face region is known, so a mask-weighted
      loss weighs the whole image evenly.
    """
    points = np.asarray(landmarks, np.float64)
    if points.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape ({NUM_LANDMARKS}, 2), got {points.shape}.")
    jaw, brows = points[JAW], points[BROWS]
    if not (np.isfinite(jaw).all() and np.isfinite(brows).all()):
        return np.ones((size, size), bool)
    chin = jaw[8]
    lift = FOREHEAD_LIFT * (chin[1] - brows[:, 1].mean())
    forehead = brows - np.array([0.0, lift])
    outline = np.concatenate([jaw, brows, forehead])
    hull = outline[spatial.ConvexHull(outline).vertices]
    mask = np.zeros((size, size), bool)
    rows, cols = draw.polygon(hull[:, 1], hull[:, 0], shape=mask.shape)
    mask[rows, cols] = True
    radius = max(1, round(DILATION_AT_128 * size / 128.0))
    return morphology.dilation(mask, morphology.disk(radius))
