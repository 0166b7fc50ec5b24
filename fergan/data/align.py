"""Face alignment on 68 landmarks, as in the paper, with the cascade crop as its fallback.

A face is aligned by the similarity transform (rotation, uniform scale, shift) that puts the eye
centres (the mean of each eye's six landmarks) at fixed positions of the output image. Landmarks
come from files shipped with a database (CK+'s `Landmarks/`) or from dlib's 68-point predictor
(`fergan.data.dlib_landmarks`, optional). Without either, `data.align = 'auto'` falls back to the
cascade crop of `fergan.data.preprocess`.

Points are (x, y) pixel coordinates with pixel centres at integers (OpenCV's and dlib's
convention). A transform is a 2x3 affine matrix mapping source points to output points.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import cv2
import numpy as np

from fergan.data import dlib_landmarks, preprocess

NUM_LANDMARKS = 68
# 0-based 68-point indices of the eye on the image's left, then on its right.
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
# Eye centres of the aligned face as fractions of its side: where the synthetic renderer draws
# them at its canonical pose, so aligned real faces are framed like the built-in set.
CANONICAL_EYES = ((0.35, 0.42), (0.65, 0.42))
MODES = ("auto", "landmarks", "crop", "none")


def resolve_mode(mode: str, crop_face: bool = False) -> str:
    """Validates `data.align`; the older `data.crop_face = True` turns 'none' into 'crop'."""
    if mode not in MODES:
        raise ValueError(f"data.align must be one of {MODES}, got {mode!r}.")
    return "crop" if mode == "none" and crop_face else mode


def unknown_landmarks() -> np.ndarray:
    """float32 [68, 2] of NaN: stored when no landmarks are known for an image."""
    return np.full((NUM_LANDMARKS, 2), np.nan, np.float32)


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """Mean of each eye's six points of landmarks [68, 2]: [2, 2] rows (left eye, right eye)."""
    return np.stack([landmarks[LEFT_EYE].mean(0), landmarks[RIGHT_EYE].mean(0)])


def canonical_eyes(size: int) -> np.ndarray:
    """Eye centres [2, 2] (x, y) in pixels of a size x size aligned image."""
    return np.asarray(CANONICAL_EYES, np.float64) * size - 0.5


def similarity_to(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The similarity transform [2, 3] mapping two points src [2, 2] exactly onto dst [2, 2]."""
    s = src[:, 0] + 1j * src[:, 1]
    d = dst[:, 0] + 1j * dst[:, 1]
    if s[1] == s[0]:
        raise ValueError(f"Both eye centres are at {src[0]}; cannot align.")
    # As complex numbers, a similarity is z -> a z + b.
    a = (d[1] - d[0]) / (s[1] - s[0])
    b = d[0] - a * s[0]
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def box_matrix(box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The transform [2, 3] of `preprocess.crop_and_resize`: box (top, left, h, w) -> size^2."""
    top, left, h, w = box
    sx, sy = size / w, size / h
    # Pixel centres: x_out + 0.5 = (x_src - left + 0.5) * sx.
    return np.array([[sx, 0.0, (0.5 - left) * sx - 0.5], [0.0, sy, (0.5 - top) * sy - 0.5]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The transform [2, 3] applying `inner`, then `outer`."""
    return np.concatenate(
        [outer[:, :2] @ inner[:, :2], outer[:, :2] @ inner[:, 2:] + outer[:, 2:]], 1
    )


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """points [P, 2] mapped by matrix [2, 3]: float32 [P, 2]."""
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W(, C)] resampled through matrix [2, 3] into [size, size(, C)].

    A strong reduction is done first by area averaging (warpAffine alone would alias), then the
    remaining transform, close to unit scale, is resampled bilinearly. Borders repeat the edge.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 1.0:
        h, w = image.shape[:2]
        sw, sh = max(round(w * scale), 1), max(round(h * scale), 1)
        small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        # Undo the shrink (source pixels per shrunk pixel) before applying the matrix.
        matrix = compose(matrix, _unshrink(w, h, sw, sh))
        image = small
    out = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return out.reshape(size, size, *image.shape[2:])


def _unshrink(w: int, h: int, sw: int, sh: int) -> np.ndarray:
    """The transform [2, 3] from a (sw, sh) resize of a (w, h) image back to the original."""
    fx, fy = w / sw, h / sh
    return np.array([[fx, 0.0, 0.5 * (fx - 1.0)], [0.0, fy, 0.5 * (fy - 1.0)]])


def read_landmarks_file(path: str | os.PathLike) -> np.ndarray:
    """Reads a CK+ `_landmarks.txt` file: 68 lines 'x y'.

    Returns:
      float32 [68, 2] (x, y) pixel coordinates.
    """
    try:
        points = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as e:
        raise preprocess.DataError(f"Cannot read landmarks file {os.fspath(path)!r}: {e}") from e
    if points.shape != (NUM_LANDMARKS, 2) or not np.isfinite(points).all():
        raise preprocess.DataError(
            f"Landmarks file {os.fspath(path)!r} holds shape {points.shape}; expected "
            f"{NUM_LANDMARKS} lines of 'x y'."
        )
    return points.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Aligner:
    """How one build aligns its faces.

    mode: 'landmarks' (similarity on the eye centres), 'crop' (cascade box) or 'none' (central
      square).
    source: where landmarks come from: 'files' (shipped with the database), 'dlib', or '' (unknown;
      stored as NaN).
    margin: the cascade crop's margin (`data.face_margin`).
    """

    mode: str
    source: str
    margin: float = 0.2

    def describe(self) -> str:
        """One line for the log saying which aligner runs."""
        if self.mode == "landmarks":
            where = {
                "files": "the database's landmark files",
                "dlib": f"dlib's 68-point predictor ({dlib_landmarks.model_path()})",
            }[self.source]
            return f"Face alignment: 68 landmarks from {where}, similarity on the eye centres."
        how = "cascade face crop" if self.mode == "crop" else "none (central square)"
        if self.source == "files":
            return f"Face alignment: {how}; landmarks from the database's landmark files."
        return (
            f"Face alignment: {how}; landmarks unknown (NaN). Landmark alignment needs "
            f"{dlib_landmarks.INSTALL_HINT}."
        )


def choose(mode: str, have_files: bool, margin: float = 0.2) -> Aligner:
    """The aligner for `data.align` = mode, given whether every frame has a landmark file.

    'auto' aligns on landmarks when files or dlib provide them and falls back to the cascade crop.
    dlib is only consulted when there are no files.

    Raises:
      ImportError: mode 'landmarks' with neither files nor dlib.
    """
    mode = resolve_mode(mode)
    source = "files" if have_files else ""
    if not source and mode in ("auto", "landmarks") and dlib_landmarks.available():
        source = "dlib"
    if mode == "landmarks" and not source:
        raise ImportError(
            "data.align='landmarks' needs landmark files in the database or dlib: "
            f"{dlib_landmarks.INSTALL_HINT}; or set data.align='auto' to fall back to the crop."
        )
    if mode == "auto":
        mode = "landmarks" if source else "crop"
    return Aligner(mode=mode, source=source, margin=margin)


def _gray(image: np.ndarray) -> np.ndarray:
    return preprocess.to_channels(image, 1)[..., 0]


def sequence_landmarks(
    aligner: Aligner, images: Sequence[np.ndarray], landmark_paths: Sequence[str]
) -> list[np.ndarray | None]:
    """Landmarks [68, 2] of each frame in source pixels (None when unknown).

    dlib detects the face once, on the peak (last) frame, and fits the landmarks of every frame
    inside that box, so a frame where detection would fail still gets its points.
    """
    if aligner.source == "files":
        return [read_landmarks_file(p) for p in landmark_paths]
    if aligner.source == "dlib":
        grays = [_gray(im) for im in images]
        box = dlib_landmarks.detect_box(grays[-1]) or preprocess.detect_face(images[-1], 0.0)
        return [dlib_landmarks.predict(g, box) for g in grays]
    return [None] * len(images)


def align_sequence(
    aligner: Aligner,
    images: Sequence[np.ndarray],
    landmark_paths: Sequence[str],
    size: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Aligns the decoded frames of one sequence (peak last) into size x size images.

    One transform serves the whole sequence, found on its peak frame, so the frames stay
    registered to each other and differ by expression only.

    Returns:
      per frame, (uint8 [size, size(, 3)], float32 [68, 2] landmarks in output pixels or NaN).
    """
    points = sequence_landmarks(aligner, images, landmark_paths)
    peak = images[-1]
    if aligner.mode == "landmarks":
        matrix = similarity_to(eye_centres(points[-1]), canonical_eyes(size))
        out = [warp(im, matrix, size) for im in images]
    else:
        crop = aligner.mode == "crop"
        box = preprocess.detect_face(peak, aligner.margin) if crop else preprocess.central_box(peak)
        matrix = box_matrix(box, size)
        out = [preprocess.crop_and_resize(im, size, box) for im in images]
    return [
        (im, unknown_landmarks() if p is None else transform_points(matrix, p))
        for im, p in zip(out, points, strict=True)
    ]
