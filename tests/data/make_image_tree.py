"""A small `expression_folder` tree of rendered faces that the face cascade finds.

Used by the tests and by CI's plain-install check, which trains `configs/image_folder.py` (face
crop on) on it:

    python -m tests.data.make_image_tree <root> [num_subjects]
"""

from __future__ import annotations

import os
import pathlib
import sys

import numpy as np
from PIL import Image

from fergan.data import face_renderer, preprocess

_ATTEMPTS = 20  # Identities tried per subject; a few cartoon faces escape the LBP cascade.


def place_face(face: np.ndarray, canvas: int, offset: tuple[int, int]) -> np.ndarray:
    """uint8 [s, s] face pasted at (top, left) `offset` on a mid-gray uint8 [canvas, canvas]."""
    out = np.full((canvas, canvas), 128, np.uint8)
    top, left = offset
    out[top : top + face.shape[0], left : left + face.shape[1]] = face
    return out


def subject_images(subject: int, face_size: int = 96, canvas: int = 160) -> list[np.ndarray] | None:
    """uint8 [canvas, canvas] apex images of one rendered identity, one per class of
    face_renderer.EXPRESSIONS, or None unless the cascade finds the face in every one."""
    identity = face_renderer.sample_identity(np.random.default_rng([subject, 0x7EE]))
    # Off-centre, so the crop has work to do; varies with the subject.
    offset = (16 + 7 * subject % 40, 40 - 5 * subject % 40)
    images = []
    for k in range(len(face_renderer.EXPRESSIONS)):
        face = np.round(face_renderer.render_face(identity, k, 1.0, face_size) * 255).astype(
            np.uint8
        )
        image = place_face(face, canvas, offset)
        if preprocess.find_face(image) is None:
            return None
        images.append(image)
    return images


def write_image_tree(root: str | os.PathLike, num_subjects: int = 10) -> list[str]:
    """Writes `<root>/<expression>/S<subject>_001_00000001.png` for subjects 1..num_subjects.

    Every image holds one off-centre face the cascade detects (checked here). Subject s uses the
    first identity seed >= s * _ATTEMPTS whose faces are all detected.

    Returns:
      the written paths, num_subjects * len(face_renderer.EXPRESSIONS) of them.
    """
    paths = []
    for subject in range(1, num_subjects + 1):
        seeds = range(subject * _ATTEMPTS, (subject + 1) * _ATTEMPTS)
        images = next((im for s in seeds if (im := subject_images(s)) is not None), None)
        if images is None:
            raise RuntimeError(f"No detectable face for subject {subject} in {_ATTEMPTS} tries.")
        for name, image in zip(face_renderer.EXPRESSIONS, images, strict=True):
            path = pathlib.Path(root) / name / f"S{subject:03d}_001_00000001.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
            paths.append(os.fspath(path))
    return paths


if __name__ == "__main__":
    written = write_image_tree(sys.argv[1], *(int(a) for a in sys.argv[2:3]))
    print(f"Wrote {len(written)} images under {sys.argv[1]}")
