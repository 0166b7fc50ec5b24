"""Image preprocessing shared by every builder: decode, channels, face crop, resize, encode.

Landmark alignment builds on these in `fergan.data.align`.
"""

from __future__ import annotations

import functools
import io
import os

import cv2
import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class DataError(ValueError):
    """Bad input data: the message names the offending file or value."""


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file fully, failing loudly on corrupt or truncated files.

    PIL's `load()` decodes every byte, so a truncated PNG/JPEG raises here instead of yielding a
    half-gray image.

    Returns:
      uint8 [H, W] (grayscale) or [H, W, 3] (colour).
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "RGB"):
                arr = np.asarray(im)
            elif im.mode in ("I;16", "I;16B", "I", "F"):
                # 16-bit grayscale scans: rescale to 8 bits.
                arr = np.asarray(im, np.float64)
                arr = np.round(255.0 * arr / max(arr.max(), 1.0)).astype(np.uint8)
            else:
                arr = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"Cannot decode image {os.fspath(path)!r}: {e}") from e
    if arr.size == 0:
        raise DataError(f"Empty image {os.fspath(path)!r}.")
    return arr


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Converts uint8 [H, W] or [H, W, 3] to [H, W, channels] (1 = luminance, 3 = RGB)."""
    if channels not in (1, 3):
        raise ValueError(f"model.channels must be 1 or 3, got {channels}.")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if channels == 1:
        if image.ndim == 3:
            image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        return image[..., None]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return image


@functools.cache
def _detector():
    """A frontal-face cascade: OpenCV's Haar cascade where the wheel ships it (OpenCV 4.x),
    otherwise the LBP cascade shipped inside scikit-image (OpenCV 5 dropped the cascades)."""
    haar_dir = getattr(getattr(cv2, "data", None), "haarcascades", "")
    haar = os.path.join(haar_dir, "haarcascade_frontalface_default.xml")
    if hasattr(cv2, "CascadeClassifier") and os.path.exists(haar):
        cascade = cv2.CascadeClassifier(haar)

        def detect(gray, min_side):
            found = cascade.detectMultiScale(gray, 1.1, 4, minSize=(min_side, min_side))
            return [tuple(int(v) for v in f) for f in found]

        return detect
    try:
        from skimage import data as sk_data
        from skimage.feature import Cascade
    except ImportError as e:
        # Both are dependencies of the package; this only fires in a hand-trimmed environment.
        raise DataError(
            "data.align='crop' or 'auto' (or data.crop_face=True) needs a face cascade: install "
            "scikit-image (LBP) or opencv-python-headless<5 (Haar), or set data.align='none'."
        ) from e
    lbp = Cascade(sk_data.lbp_frontal_face_cascade_filename())

    def detect(gray, min_side):
        found = lbp.detect_multi_scale(
            img=gray.astype(np.float32) / 255.0,
            scale_factor=1.2,
            step_ratio=1,
            min_size=(min_side, min_side),
            max_size=gray.shape,
        )
        return [(f["c"], f["r"], f["width"], f["height"]) for f in found]

    return detect


def check_detector() -> None:
    """Raises DataError when no face cascade can be loaded (the crop alignment needs one)."""
    _detector()


def find_face(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the largest face the cascade finds in uint8 [H, W(, C)], or None."""
    gray = image if image.ndim == 2 else to_channels(image, 1)[..., 0]
    min_side = max(24, min(gray.shape) // 6)
    faces = _detector()(gray, min_side)
    return max(faces, key=lambda f: f[2] * f[3]) if faces else None


def central_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """The largest central square (top, left, side, side) of image [H, W, ...]."""
    h, w = image.shape[:2]
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def detect_face(image: np.ndarray, margin: float = 0.2) -> tuple[int, int, int, int]:
    """Square crop box (top, left, side, side) around the largest detected face.

    Falls back to the central square when no face is found (e.g. already-cropped images).
    `margin` enlarges the detector's box on every side, as a fraction of its size.
    """
    h, w = image.shape[:2]
    face = find_face(image)
    if face is None:
        return central_box(image)
    x, y, fw, fh = face
    side = round(max(fw, fh) * (1.0 + 2.0 * margin))
    side = min(side, h, w)
    cy, cx = y + fh / 2.0, x + fw / 2.0
    top = int(np.clip(round(cy - side / 2.0), 0, h - side))
    left = int(np.clip(round(cx - side / 2.0), 0, w - side))
    return top, left, side, side


def crop_and_resize(
    image: np.ndarray, size: int, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Crops `box` (top, left, height, width; None = central square) and resizes to size x size."""
    top, left, bh, bw = central_box(image) if box is None else box
    crop = image[top : top + bh, left : left + bw]
    interp = cv2.INTER_AREA if min(bh, bw) > size else cv2.INTER_LINEAR
    out = cv2.resize(crop, (size, size), interpolation=interp)
    return out.reshape(size, size, *image.shape[2:])


def encode_png(image: np.ndarray) -> io.BytesIO:
    """PNG-encodes uint8 [H, W, C] for a TFDS Image feature (bytes, so TFDS re-encodes nothing)."""
    img = image[..., 0] if image.shape[-1] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise DataError(f"PNG encoding failed for an image of shape {image.shape}.")
    return io.BytesIO(buf.tobytes())


def list_images(folder: str | os.PathLike) -> list[str]:
    """Sorted image file names (not paths) directly inside `folder`."""
    return sorted(
        n
        for n in os.listdir(folder)
        if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
    )


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, C] -> float32 in [-1, 1]."""
    return images.astype(np.float32) * (2.0 / 255.0) - 1.0
