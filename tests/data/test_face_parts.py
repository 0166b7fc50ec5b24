"""`face_part_masks`: the renderer's analytic part labels agree with what it paints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fergan.data import face_renderer

SIZE = 64
CASES = [
    (seed, expression)
    for seed in (0, 3, 7, 11)
    for expression in (None, "happiness", "surprise", "anger", "sadness")
]


def _face(seed: int):
    """(identity, posed nuisance) of one test subject."""
    rng = np.random.default_rng(seed)
    return face_renderer.sample_identity(rng), face_renderer.sample_nuisance(rng)


def _pixel_centres(size: int) -> np.ndarray:
    """(x, y) of every pixel centre: float [size, size, 2]."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    return np.stack([xs, ys], -1)


def _in_box(points: np.ndarray, size: int, pad: float) -> np.ndarray:
    """bool [size, size]: pixel centres inside the bounding box of `points` [P, 2] grown by
    `pad` pixels."""
    xy = _pixel_centres(size)
    lo, hi = points.min(0) - pad, points.max(0) + pad
    return np.all((xy >= lo) & (xy <= hi), -1)


def _inside_convex(points: np.ndarray, size: int, margin: float) -> np.ndarray:
    """bool [size, size]: pixel centres at least `margin` pixels inside the convex polygon whose
    vertices `points` [P, 2] are listed in order around it."""
    xy = _pixel_centres(size)
    a, b = points, np.roll(points, -1, 0)
    edge = b - a
    # Inward normals: the polygon's orientation decides their side.
    area = np.sum(a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1])
    normal = np.sign(area) * np.stack([-edge[:, 1], edge[:, 0]], 1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    dist = ((xy[..., None, :] - a) * normal).sum(-1)
    return dist.min(-1) >= margin


def test_labels_shape_and_classes():
    identity, nuisance = _face(0)
    labels = face_renderer.face_part_masks(identity, "surprise", 1.0, SIZE, nuisance)
    assert labels.shape == (SIZE, SIZE) and labels.dtype == np.int32
    assert set(np.unique(labels)) == set(range(len(face_renderer.PARTS)))
    # The rng only adds pixel noise, so the labels of the clean and noisy renders are the same.
    np.testing.assert_array_equal(
        labels, face_renderer.face_part_masks(identity, "surprise", 1.0, SIZE, nuisance)
    )


@pytest.mark.parametrize("seed,expression", CASES)
def test_lips_are_where_the_mouth_painter_paints(monkeypatch, seed, expression):
    identity, nuisance = _face(seed)
    # Dark lips, so that every lip pixel differs clearly from the skin below it.
    identity = dataclasses.replace(identity, lip_tone=0.2)
    face = face_renderer.render_face(identity, expression, 1.0, SIZE, None, nuisance)
    monkeypatch.setattr(face_renderer, "_paint_mouth", lambda img, *args: img)
    no_mouth = face_renderer.render_face(identity, expression, 1.0, SIZE, None, nuisance)
    changed = np.abs(face - no_mouth) > 0.05
    labels = face_renderer.face_part_masks(identity, expression, 1.0, SIZE, nuisance)
    lips = labels == 3
    assert lips.sum() >= 8
    # Along the opening's rim the light teeth, blended over the dark lips, can land near the
    # skin's gray; everywhere else a lip pixel is clearly painted.
    assert changed[lips].mean() >= 0.9
    mouth_points = face_renderer.face_landmarks(identity, expression, 1.0, SIZE, nuisance)[48:]
    # Soft edges change the pixels around the border too, hence the pad.
    assert np.all(_in_box(mouth_points, SIZE, 1.5)[changed | lips])


@pytest.mark.parametrize("seed,expression", CASES)
def test_eyes_lie_in_the_eye_landmarks_boxes(seed, expression):
    identity, nuisance = _face(seed)
    labels = face_renderer.face_part_masks(identity, expression, 1.0, SIZE, nuisance)
    points = face_renderer.face_landmarks(identity, expression, 1.0, SIZE, nuisance)
    # The lid landmarks sit at a third of the eye's width, a little below the arcs' peak.
    boxes = [_in_box(points[36:42], SIZE, 2.0), _in_box(points[42:48], SIZE, 2.0)]
    eyes = labels == 2
    assert np.all((boxes[0] | boxes[1])[eyes])
    assert all((eyes & box).sum() >= 2 for box in boxes)


@pytest.mark.parametrize("seed,expression", CASES)
def test_skin_fills_the_face_between_the_features(seed, expression):
    identity, nuisance = _face(seed)
    labels = face_renderer.face_part_masks(identity, expression, 1.0, SIZE, nuisance)
    points = face_renderer.face_landmarks(identity, expression, 1.0, SIZE, nuisance)
    # The outline from temple to temple under the chin (its ends can be under the fringe).
    face = _inside_convex(points[1:16], SIZE, 1.5)
    mouth = _in_box(points[48:], SIZE, 1.5)
    eyes = _in_box(points[36:42], SIZE, 2.0) | _in_box(points[42:48], SIZE, 2.0)
    assert np.all(labels[face & ~mouth & ~eyes] == 1)
    # Inside the face, only the mouth's opening is background.
    assert np.all(labels[face & ~mouth] > 0)
