"""Multi-pose synthetic data (data.poses), the `pose` feature, same-subject targets (the
'target' batch feature), the 68-point mirror order and per-pose accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from fergan.data import builders, face_renderer, heatmaps, pipeline
from fergan.evaluation import heldout
from tests.data.conftest import small_config

POSES = "-30,0,30"


def test_pose_bins_turn_the_head_and_keep_the_frontal_set():
    frames = list(face_renderer.generate(0, 1, 32, poses=(-30, 0, 30)))
    assert len(frames) == len(face_renderer.EXPRESSIONS) * 3 * 3
    peaks = {f.pose: f for f in frames if f.is_peak and f.label == 4}
    assert sorted(peaks) == [-30, 0, 30]
    # The nose tip (point 30) moves with yaw, one way for each sign.
    nose = {p: peaks[p].landmarks[30, 0] for p in peaks}
    assert nose[-30] < nose[0] < nose[30] or nose[-30] > nose[0] > nose[30]
    assert len({f.sequence for f in frames}) == len(face_renderer.EXPRESSIONS) * 3
    # Without poses, the frames are exactly those of before (same seeds), all with pose 0.
    plain = list(face_renderer.generate(0, 1, 32))
    assert {f.pose for f in plain} == {0}
    assert len(plain) == len(face_renderer.EXPRESSIONS) * 3


@pytest.mark.parametrize("value", ["a,b", "10,10", "90"])
def test_bad_poses_name_the_key(value):
    config = small_config(poses=value)
    with pytest.raises(ValueError, match=r"data\.poses"):
        builders.builder_config(config)


def test_poses_are_for_the_synthetic_set_only(tmp_path):
    config = small_config(name="expression_folder", manual_dir=str(tmp_path), poses="0,15")
    with pytest.raises(ValueError, match=r"data\.poses"):
        builders.builder_config(config)


def test_pose_feature_targets_and_pose_accuracy(data_dir):
    config = small_config(poses=POSES, num_subjects=4)
    config.train.batch_size = 16
    datasets = pipeline.build_datasets(config, data_dir)
    assert set(np.unique(datasets.train.poses)) == {-30, 0, 30}
    assert builders.builder_config(config).name != builders.builder_config(small_config()).name
    test = pipeline.eval_arrays(datasets, "test")
    assert sorted(set(test["pose"])) == [-30, 0, 30]

    it = pipeline.make_train_iterator(config, datasets, features=("target",))
    batch = next(it)
    train = datasets.train
    by_image = {train.image(i).tobytes(): i for i in range(len(train))}

    def position(face):
        """The training position of a batch face, flipped or not."""
        pixels = np.round((face + 1) * 127.5).astype(np.uint8)
        found = [by_image.get(p.tobytes()) for p in (pixels, pixels[:, ::-1])]
        assert found != [None, None]
        return found[0] if found[0] is not None else found[1]

    for i in range(16):
        # x_target is one of x's subject's frames, showing y_target (every synthetic subject
        # has every class), its landmarks scaled to [-1, 1] and its label as y_t.
        assert batch["y_t"][i] == batch["y_target"][i]
        assert batch["g_target"].shape == (16, 136)
        # Pixels scaled to [-1, 1]; a turned jaw may reach just past the image's edge.
        assert np.all(np.abs(batch["g_target"][i]) <= 1.2)
        j, k = position(batch["x_target"][i]), position(batch["x"][i])
        assert train.subjects[j] == train.subjects[k]
        assert train.labels[j] == batch["y_t"][i]
    # The other keys do not change when the feature is asked for.
    plain = next(pipeline.make_train_iterator(config, datasets))
    for key in plain:
        np.testing.assert_array_equal(plain[key], batch[key])

    prediction = test["y"].copy()
    prediction[test["pose"] == 30] = (prediction[test["pose"] == 30] + 1) % 7
    per_pose = heldout.pose_accuracies(prediction, test["y"], test["pose"])
    assert per_pose == {"accuracy_pose_-30": 1.0, "accuracy_pose_0": 1.0, "accuracy_pose_30": 0.0}
    assert heldout.pose_accuracies(prediction, test["y"], np.zeros_like(test["pose"])) == {}


def test_mirror_order_keeps_point_names():
    identity = face_renderer.sample_identity(np.random.default_rng(3))
    points = face_renderer.face_landmarks(identity, 4, 1.0, 64)
    image = np.zeros((64, 64), np.uint8)
    _, named = heatmaps.flip_named_face(image, points)
    # The outer corner of the eye on the image's left (36) stays left of its partner (45), the
    # jaw still starts on the left, and the mouth's left corner (48) stays left of 54.
    for left, right in ((36, 45), (0, 16), (48, 54), (17, 26), (31, 35)):
        assert points[left, 0] < points[right, 0]
        assert named[left, 0] < named[right, 0]
    # A symmetric face flips onto itself: its named points land near the originals.
    assert np.abs(named - points).max() < 6.0
    np.testing.assert_array_equal(heatmaps.MIRROR_ORDER[heatmaps.MIRROR_ORDER], np.arange(68))
