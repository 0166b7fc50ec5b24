"""The procedural face set: renderer and TFDS builder."""

from __future__ import annotations

import collections
import dataclasses
import glob
import hashlib
import os

import numpy as np

from fergan.data import builders, face_renderer
from tests.data.conftest import small_config

# sha256 of the faces and landmarks in `test_rendering_is_pinned`, recorded at commit b1b48fb
# (before the renderer's drawing was split into one function per feature). The same with NumPy's
# AVX-512 and AVX2 loops switched off (NPY_DISABLE_CPU_FEATURES): it does not depend on the host.
RENDER_DIGEST = "4d4f315177bdfe0bc1f3dd35502eb15eb3f5cf73ebc8cd4817b9fbb0cb867c7c"


def _build(config, data_dir):
    builder = builders.make_builder(config, data_dir)
    builders.prepare(builder)
    return builder


def _record_bytes(data_dir):
    files = sorted(glob.glob(os.path.join(data_dir, "**", "*.array_record*"), recursive=True))
    assert files
    return [open(f, "rb").read() for f in files]


def test_same_seed_gives_identical_bytes(tmp_path):
    config = small_config(num_subjects=3)
    _build(config, str(tmp_path / "a"))
    _build(config, str(tmp_path / "b"))
    assert _record_bytes(str(tmp_path / "a")) == _record_bytes(str(tmp_path / "b"))
    config.data.synthetic_seed = 1
    _build(config, str(tmp_path / "c"))
    assert _record_bytes(str(tmp_path / "a")) != _record_bytes(str(tmp_path / "c"))


def test_label_and_subject_statistics(data_dir):
    config = small_config(num_subjects=5, frames_per_sequence=8, label_last_frames=3)
    source = _build(config, data_dir).as_data_source(builders.SPLIT)
    rows = [source[i] for i in range(len(source))]
    assert len(rows) == 5 * 7 * 3
    assert collections.Counter(int(r["label"]) for r in rows) == dict.fromkeys(range(7), 15)
    assert collections.Counter(int(r["subject"]) for r in rows) == dict.fromkeys(range(1, 6), 21)
    assert {int(r["frame"]) for r in rows} == {5, 6, 7}
    peaks = [r for r in rows if r["is_peak"]]
    assert len(peaks) == 35 and all(int(r["frame"]) == 7 for r in peaks)
    assert len({int(r["sequence"]) for r in rows}) == 35
    assert rows[0]["image"].shape == (32, 32, 1) and rows[0]["image"].dtype == np.uint8


def test_render_face_factors():
    identity = face_renderer.sample_identity(np.random.default_rng(0))
    neutral = face_renderer.render_face(identity, None, 0.0, 64)
    assert neutral.shape == (64, 64) and neutral.dtype == np.float32
    assert neutral.min() >= 0.0 and neutral.max() <= 1.0
    # The clean render is deterministic; intensity 0 of any class is close to neutral.
    np.testing.assert_array_equal(neutral, face_renderer.render_face(identity, None, 0.0, 64))
    happy = face_renderer.render_face(identity, "happiness", 1.0, 64)
    surprise = face_renderer.render_face(identity, 6, 1.0, 64)
    assert np.abs(happy - neutral).mean() > 0.005
    assert np.abs(happy - surprise).mean() > 0.005
    other = face_renderer.sample_identity(np.random.default_rng(1))
    assert np.abs(face_renderer.render_face(other, "happiness", 1.0, 64) - happy).mean() > 0.02


def test_intensity_ramp_and_bad_size():
    ramp = face_renderer.sequence_intensities(10)
    assert ramp[0] == 0.0 and ramp[-1] == 1.0 and np.all(np.diff(ramp) > 0)
    try:
        next(face_renderer.generate(0, 1, 16))
    except ValueError as e:
        assert "image_size" in str(e)
    else:
        raise AssertionError("size 16 accepted")


def test_rendering_is_pinned():
    """Noisy, posed faces (glasses off and on) and their landmarks are the recorded bits."""
    digest = hashlib.sha256()
    for seed in (0, 5):
        for glasses in (False, True):
            identity = face_renderer.sample_identity(np.random.default_rng(seed))
            identity = dataclasses.replace(identity, glasses=glasses)
            for expression in (None, "contempt", "happiness", "surprise"):
                rng = np.random.default_rng(seed)
                nuisance = face_renderer.sample_nuisance(rng)
                face = face_renderer.render_face(identity, expression, 0.8, 48, rng, nuisance)
                digest.update(face.tobytes())
                points = face_renderer.face_landmarks(identity, expression, 0.8, 48, nuisance)
                digest.update(points.tobytes())
    assert digest.hexdigest() == RENDER_DIGEST
