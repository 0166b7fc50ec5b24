"""Landmark alignment, the synthetic faces' analytic landmarks, and the `landmarks` feature."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from fergan.data import align, builders, dlib_landmarks, face_renderer, preprocess
from fergan.data.builders import base
from fergan.data.preprocess import DataError
from tests.data.conftest import make_ck_tree, prepared_files, small_config, write_landmarks

# A pose a similarity transform undoes (yaw is not one: it moves features against the outline).
POSED = face_renderer.Nuisance(roll=0.3, scale=0.9, shift_u=0.1, shift_v=-0.06)


def _face(identity, expression, size, nuisance=POSED):
    """uint8 [size, size] rendered face (no noise) and its landmarks [68, 2]."""
    image = face_renderer.render_face(identity, expression, 1.0, size, None, nuisance)
    points = face_renderer.face_landmarks(identity, expression, 1.0, size, nuisance)
    return np.round(image * 255).astype(np.uint8), points


def _bilinear(image, x, y):
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    patch = image[y0 : y0 + 2, x0 : x0 + 2].astype(np.float64)
    return patch @ [1 - fx, fx] @ [1 - fy, fy]


@pytest.mark.parametrize("seed", range(4))
def test_eye_centres_land_on_canonical_positions(seed):
    rng = np.random.default_rng(seed)
    identity = face_renderer.sample_identity(rng)
    nuisance = face_renderer.sample_nuisance(rng, 3.0)  # Strong roll, scale, shift and yaw.
    points = face_renderer.face_landmarks(identity, seed, 1.0, 96, nuisance)
    matrix = align.similarity_to(align.eye_centres(points), align.canonical_eyes(48))
    moved = align.eye_centres(align.transform_points(matrix, points))
    np.testing.assert_allclose(moved, align.canonical_eyes(48), atol=1.0)
    # A similarity: the linear part is a scaled rotation.
    linear = matrix[:, :2]
    np.testing.assert_allclose(linear @ linear.T, np.eye(2) * np.linalg.det(linear), atol=1e-9)


def _blob(shape, x, y, sigma=3.0):
    """uint8 image of a Gaussian spot centred at pixel (x, y)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    spot = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return np.round(255 * spot).astype(np.uint8)


def _centroid(image):
    """Intensity-weighted (x, y) of an image's spot."""
    w = image.astype(np.float64)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    return np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()


@pytest.mark.parametrize("angle, scale", [(0.0, 1.0), (0.5, 0.8), (-0.3, 0.3), (0.2, 2.0)])
def test_warp_moves_pixels_where_transform_points_moves_points(angle, scale):
    spot = np.array([[70.3, 58.6]])
    image = _blob((150, 200), *spot[0], sigma=4.0)
    a = scale * np.exp(1j * angle)
    # The spot lands at (41.7, 50.2) of the output, clear of its borders.
    shift = 41.7 + 50.2j - a * (70.3 + 58.6j)
    matrix = np.array([[a.real, -a.imag, shift.real], [a.imag, a.real, shift.imag]])
    # Shrinking by 0.3 takes the area-averaging path first.
    out = align.warp(image, matrix, 96)
    np.testing.assert_allclose(_centroid(out), align.transform_points(matrix, spot)[0], atol=0.1)


def test_box_matrix_is_the_crop_and_resize_geometry():
    spot = np.array([[92.4, 71.8]])
    image = _blob((150, 200), *spot[0], sigma=6.0)
    box = (20, 40, 110, 110)
    out = preprocess.crop_and_resize(image, 40, box)
    expected = align.transform_points(align.box_matrix(box, 40), spot)[0]
    np.testing.assert_allclose(_centroid(out), expected, atol=0.1)


def _aligned(image, points, size):
    matrix = align.similarity_to(align.eye_centres(points), align.canonical_eyes(size))
    return align.warp(image, matrix, size).astype(np.float64)


def test_aligned_image_matches_the_canonical_face():
    identity = face_renderer.sample_identity(np.random.default_rng(1))
    posed, posed_points = _face(identity, "happiness", 128)
    upright, upright_points = _face(identity, "happiness", 64, face_renderer.Nuisance())
    reference = _aligned(upright, upright_points, 48)
    # Resampling leaves a little difference (gray levels out of 255).
    assert np.abs(_aligned(posed, posed_points, 48) - reference).mean() < 3.0
    # Without alignment the two differ far more.
    plain = align.Aligner(mode="none", source="")
    [(unaligned, _)] = align.align_sequence(plain, [posed], [""], 48)
    assert np.abs(unaligned - reference).mean() > 12.0


@pytest.mark.parametrize("expression", [None, "surprise", "anger"])
def test_synthetic_landmarks_sit_on_the_drawing(expression):
    identity = face_renderer.sample_identity(np.random.default_rng(7))
    image, points = _face(identity, expression, 96, dataclasses.replace(POSED, yaw=0.4))
    for centre in align.eye_centres(points):
        # The iris is drawn at the eye centre.
        assert abs(_bilinear(image, *centre) / 255 - identity.iris) < 0.08
    # Layout: brows above eyes above the nose tip above the mouth above the chin (upright face).
    _, upright = _face(identity, expression, 96, face_renderer.Nuisance())
    y = upright[:, 1]
    assert y[17:27].max() < y[36:48].min() < y[36:48].max() < y[30] < y[48:68].min()
    assert y[48:68].max() < y[8] and np.argmax(y[:17]) == 8
    assert upright[:8, 0].max() < upright[8, 0] < upright[9:17, 0].min()  # Jaw left to right.
    assert upright[36:42, 0].max() < upright[42:48, 0].min()


def test_synthetic_landmarks_follow_expression():
    identity = face_renderer.sample_identity(np.random.default_rng(3))
    still = face_renderer.Nuisance()

    def points(expression):
        return face_renderer.face_landmarks(identity, expression, 1.0, 64, still)

    neutral, surprise, happy = points(None), points("surprise"), points("happiness")
    assert (surprise[17:27, 1] < neutral[17:27, 1] - 0.5).all()  # Brows raised.
    assert surprise[66, 1] - surprise[62, 1] > neutral[66, 1] - neutral[62, 1] + 2  # Mouth open.
    width = lambda p: p[54, 0] - p[48, 0]
    assert width(happy) > width(neutral) + 1  # Smile widens the mouth.
    np.testing.assert_array_equal(neutral[:17], surprise[:17])  # The outline does not move.


def _ck_faces(root, with_landmarks: bool):
    """A fake CK+ tree whose frames are rendered, posed faces off-centre in a wider frame.

    Returns:
      {subject: (identity, expression)}.
    """
    make_ck_tree(root, {(5, 1): (3, 5), (6, 1): (3, 7)})
    rng = np.random.default_rng(0)
    faces = {}
    for subj, expression in ((5, "happiness"), (6, "surprise")):
        identity = face_renderer.sample_identity(rng)
        faces[subj] = identity, expression
        image, points = _face(identity, expression, 96)
        canvas = np.full((120, 160), 90, np.uint8)
        canvas[12:108, 40:136] = image
        for f in range(1, 4):
            stem = f"S{subj:03d}_001_{f:08d}"
            frames = root / "cohn-kanade-images" / f"S{subj:03d}" / "001"
            assert cv2.imwrite(str(frames / f"{stem}.png"), canvas)
            if with_landmarks:
                lm = root / "Landmarks" / f"S{subj:03d}" / "001" / f"{stem}_landmarks.txt"
                write_landmarks(lm, points + np.array([40.0, 12.0]))
    return faces


def _build_rows(config, data_dir, monkeypatch):
    logged = []
    monkeypatch.setattr(base.logging, "info", lambda msg, *a: logged.append(msg % a))
    builder = builders.make_builder(config, data_dir)
    builders.prepare(builder, config.data.manual_dir)
    source = builder.as_data_source(builders.SPLIT)
    return [source[i] for i in range(len(source))], logged


def _check_aligned_rows(rows, faces, tolerance):
    """Stored eye centres sit at the canonical positions and the image is the aligned face."""
    for r in rows:
        eyes = align.eye_centres(r["landmarks"])
        np.testing.assert_allclose(eyes, align.canonical_eyes(32), atol=tolerance)
        identity, expression = faces[int(r["subject"])]
        reference = _aligned(*_face(identity, expression, 64, face_renderer.Nuisance()), 32)
        assert np.abs(r["image"][..., 0] - reference).mean() < 6.0


def test_ck_plus_landmark_files(tmp_path, data_dir, monkeypatch):
    manual = tmp_path / "ck"
    faces = _ck_faces(manual, with_landmarks=True)
    config = small_config(name="ck_plus", manual_dir=str(manual), align="auto")
    rows, logged = _build_rows(config, data_dir, monkeypatch)
    assert len(rows) == 6
    assert [m for m in logged if "Face alignment" in m] == [
        "ck_plus: Face alignment: 68 landmarks from the database's landmark files, similarity on "
        "the eye centres."
    ]
    _check_aligned_rows(rows, faces, tolerance=1e-3)
    # Without alignment the files' points still follow the image: the central square, resized.
    config.data.align = "none"
    plain, _ = _build_rows(config, data_dir, monkeypatch)
    box = preprocess.central_box(np.zeros((120, 160)))
    for r in plain:
        subj = f"S{int(r['subject']):03d}"
        name = f"{subj}_001_{int(r['frame']):08d}_landmarks.txt"
        truth = align.read_landmarks_file(manual / "Landmarks" / subj / "001" / name)
        expected = align.transform_points(align.box_matrix(box, 32), truth)
        np.testing.assert_allclose(r["landmarks"], expected, atol=1e-4)


def test_ck_plus_missing_landmark_file(tmp_path, data_dir):
    manual = tmp_path / "ck"
    _ck_faces(manual, with_landmarks=True)
    missing = manual / "Landmarks" / "S006" / "001" / "S006_001_00000002_landmarks.txt"
    missing.unlink()
    config = small_config(name="ck_plus", manual_dir=str(manual), align="auto")
    with pytest.raises(DataError, match=r"S006_001_00000002_landmarks\.txt"):
        builders.prepare(builders.make_builder(config, data_dir), str(manual))
    assert prepared_files(data_dir) == []


def test_crop_fallback_without_landmarks(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(dlib_landmarks, "available", lambda: False)
    manual = tmp_path / "ck"
    _ck_faces(manual, with_landmarks=False)
    config = small_config(name="ck_plus", manual_dir=str(manual), align="auto")
    rows, logged = _build_rows(config, data_dir, monkeypatch)
    [line] = [m for m in logged if "Face alignment" in m]
    assert "cascade face crop" in line and "fergan[landmarks]" in line
    assert all(np.isnan(r["landmarks"]).all() for r in rows)
    config.data.align = "landmarks"
    with pytest.raises(ImportError, match=r"fergan\[landmarks\]"):
        builders.prepare(builders.make_builder(config, data_dir), str(manual))


def test_align_modes():
    assert align.resolve_mode("none", crop_face=True) == "crop"  # The older data.crop_face.
    assert align.resolve_mode("landmarks", crop_face=True) == "landmarks"
    assert align.choose("auto", have_files=True).source == "files"
    assert align.choose("none", have_files=False).mode == "none"
    with pytest.raises(ValueError, match=r"data\.align must be one of"):
        align.resolve_mode("dlib")


def test_ck_landmark_file_must_hold_68_points(tmp_path):
    path = tmp_path / "x_landmarks.txt"
    write_landmarks(path, np.zeros((67, 2)))
    with pytest.raises(DataError, match=r"x_landmarks\.txt"):
        align.read_landmarks_file(path)
    write_landmarks(path, np.arange(136.0).reshape(68, 2))
    np.testing.assert_array_equal(align.read_landmarks_file(path)[3], [6.0, 7.0])


needs_dlib = pytest.mark.skipif(not dlib_landmarks.available(), reason="needs fergan[landmarks]")


@needs_dlib
def test_dlib_finds_the_rendered_landmarks():
    identity = face_renderer.sample_identity(np.random.default_rng(1))
    image, points = _face(identity, None, 128, face_renderer.Nuisance())
    canvas = np.full((300, 300), 128, np.uint8)
    canvas[80:208, 100:228] = image
    box = dlib_landmarks.detect_box(canvas)
    assert box is not None
    found = dlib_landmarks.predict(canvas, box)
    assert found.shape == (68, 2) and found.dtype == np.float32
    truth = align.eye_centres(points + np.array([100.0, 80.0]))
    np.testing.assert_allclose(align.eye_centres(found), truth, atol=1.5)


@needs_dlib
def test_ck_plus_aligned_with_dlib(tmp_path, data_dir, monkeypatch):
    manual = tmp_path / "ck"
    faces = _ck_faces(manual, with_landmarks=False)
    config = small_config(name="ck_plus", manual_dir=str(manual), align="landmarks")
    rows, logged = _build_rows(config, data_dir, monkeypatch)
    assert any("dlib's 68-point predictor" in m for m in logged)
    _check_aligned_rows(rows, faces, tolerance=1e-3)


def test_every_builder_has_landmarks(tmp_path):
    config = base.make_config(class_names=("a", "b"), image_size=32, channels=1)
    for name, cls in builders.BUILDERS.items():
        feature = cls(config=config, data_dir=str(tmp_path / name)).info.features["landmarks"]
        assert feature.shape == (68, 2) and feature.dtype == np.float32, name


def test_synthetic_builder_stores_the_analytic_landmarks(data_dir):
    config = small_config(num_subjects=2)
    builder = builders.make_builder(config, data_dir)
    builders.prepare(builder)
    source = builder.as_data_source(builders.SPLIT)
    stored = {(int(r["sequence"]), int(r["frame"])): r["landmarks"] for r in source}
    options = dict(builder.builder_config.extra)
    frames = list(
        face_renderer.generate(
            seed=options["seed"],
            num_subjects=2,
            size=32,
            frames_per_sequence=options["frames_per_sequence"],
            nuisance=options["nuisance"],
            style=options["style"],
        )
    )
    assert len(frames) == len(stored) == 2 * 7 * 3
    for fr in frames:
        np.testing.assert_array_equal(stored[(fr.sequence, fr.frame)], fr.landmarks)


def test_synthesize_inputs_are_aligned_like_the_training_data(tmp_path, monkeypatch):
    from fergan.experiments import synthesize

    identity = face_renderer.sample_identity(np.random.default_rng(4))
    image, points = _face(identity, None, 96)
    path = str(tmp_path / "face.png")
    assert cv2.imwrite(path, image)
    plain, unknown = synthesize.load_face(path, 32, 1, align.Aligner(mode="none", source=""))
    assert np.isnan(unknown).all()  # No detector: no landmarks.
    centre = preprocess.to_channels(preprocess.crop_and_resize(image, 32), 1)
    np.testing.assert_array_equal(plain, preprocess.to_float(centre))
    # With landmarks (here from a stub predictor returning the true points) the input is aligned.
    monkeypatch.setattr(align, "sequence_landmarks", lambda *_: [points])
    aligned, marks = synthesize.load_face(
        path, 32, 1, align.Aligner(mode="landmarks", source="dlib")
    )
    assert marks.shape == (68, 2) and np.isfinite(marks).all()
    expected = preprocess.to_float(_aligned(image, points, 32).round().astype(np.uint8))
    np.testing.assert_allclose(aligned[..., 0], expected, atol=1e-6)
