"""dlib's 68-point shape predictor, an optional dependency (`pip install fergan[landmarks]`).

dlib comes from the `dlib-bin` wheel and the model file from the `face_recognition_models`
distribution, located on disk without importing that package (its `__init__` needs
`pkg_resources`). Nothing is ever downloaded at run time. The model was trained on iBUG 300-W,
whose licence excludes commercial use.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os

import numpy as np

MODEL_DISTRIBUTION = "face_recognition_models"
MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = "pip install 'fergan[landmarks]' (dlib-bin and face_recognition_models)"


def model_path() -> str | None:
    """Path of the 68-point model inside the installed distribution, or None when absent."""
    try:
        dist = importlib.metadata.distribution(MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == MODEL_FILE:
            path = os.fspath(f.locate())
            return path if os.path.isfile(path) else None
    return None


def available() -> bool:
    """Whether both dlib and the 68-point model are installed."""
    return importlib.util.find_spec("dlib") is not None and model_path() is not None


@functools.cache
def _models():
    path = model_path()
    if importlib.util.find_spec("dlib") is None or path is None:
        raise ImportError(f"dlib landmarks are not installed: {INSTALL_HINT}.")
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(path)


def detect_box(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """Box (top, left, height, width) of the largest face dlib's HOG detector finds, or None.

    Args:
      gray: uint8 [H, W].
    """
    detector, _ = _models()
    # Unaided, the HOG detector finds faces of 80 px and more; one upsampling (4x the work) brings
    # that to 40 px, needed only in small frames.
    upsample = 1 if min(gray.shape) < 320 else 0
    rects = detector(np.ascontiguousarray(gray), upsample)
    if not rects:
        return None
    r = max(rects, key=lambda r: r.width() * r.height())
    return r.top(), r.left(), r.height(), r.width()


def predict(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The 68 landmarks of the face in `box` (top, left, height, width).

    Args:
      gray: uint8 [H, W].

    Returns:
      float32 [68, 2] (x, y) pixel coordinates.
    """
    import dlib

    _, predictor = _models()
    top, left, h, w = (int(v) for v in box)
    shape = predictor(np.ascontiguousarray(gray), dlib.rectangle(left, top, left + w, top + h))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)
