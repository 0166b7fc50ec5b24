"""Helpers shared by the data tests: tiny configs and fake database trees."""

from __future__ import annotations

import os
import pathlib

import cv2
import numpy as np
import pytest

from configs import default


def small_config(**data):
    """Default config at 32 px with a few synthetic subjects; `data` overrides config.data."""
    config = default.get_config()
    config.model.image_size = 32
    config.data.num_subjects = 4
    config.data.num_folds = 2
    config.train.batch_size = 8
    for key, value in data.items():
        setattr(config.data, key, value)
    return config


def write_png(path: str | os.PathLike, value: int, size: int = 40) -> None:
    """A small gray PNG whose mean level `value` identifies it after decoding."""
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    img = np.full((size, size), value, np.uint8)
    img[::7] = 255 - value  # Some structure, so resizing has something to do.
    assert cv2.imwrite(os.fspath(path), img)


def make_ck_tree(root: pathlib.Path, sequences: dict[tuple[int, int], tuple[int, int | None]]):
    """CK+ release layout. sequences[(subject, seq)] = (num_frames, emotion code or None)."""
    for (subj, seq), (n, code) in sequences.items():
        for f in range(1, n + 1):
            name = f"S{subj:03d}_{seq:03d}_{f:08d}.png"
            write_png(root / "cohn-kanade-images" / f"S{subj:03d}" / f"{seq:03d}" / name, f * 10)
        label_dir = root / "Emotion" / f"S{subj:03d}" / f"{seq:03d}"
        label_dir.mkdir(parents=True, exist_ok=True)
        if code is not None:
            text = f"   {float(code):.7e}\n"
            (label_dir / f"S{subj:03d}_{seq:03d}_{n:08d}_emotion.txt").write_text(text)


@pytest.fixture
def data_dir(tmp_path):
    return os.fspath(tmp_path / "tfds")


def prepared_files(data_dir: str) -> list[str]:
    """Files that would make up a (possibly partial) prepared dataset under data_dir."""
    out = []
    for dirpath, _, names in os.walk(data_dir):
        out += [
            os.path.join(dirpath, n) for n in names if "array_record" in n or n.endswith(".json")
        ]
    return out


def write_landmarks(path: str | os.PathLike, points: np.ndarray) -> None:
    """A CK+-style `_landmarks.txt`: one 'x y' line per point, in the release's number format."""
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    lines = [f"   {x:.7e}   {y:.7e}" for x, y in points]
    pathlib.Path(path).write_text("\n".join(lines) + "\n")
