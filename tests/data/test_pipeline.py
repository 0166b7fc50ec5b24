"""The grain training pipeline and evaluation arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fergan.data import pipeline
from tests.data.conftest import small_config


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    config = small_config(num_subjects=4, num_folds=2, flip=False)
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    return config, pipeline.build_datasets(config, data_dir)


def _take(it, n):
    return [next(it) for _ in range(n)]


def _train_lookup(datasets):
    arrays = pipeline.eval_arrays(datasets, "train")
    return {x.tobytes(): int(y) for x, y in zip(arrays["x"], arrays["y"], strict=True)}


def test_fold_contents(built):
    config, ds = built
    assert ds.class_names[0] == "anger" and ds.num_classes == 7
    assert ds.num_train_subjects == 2 and ds.num_test_subjects == 2
    assert not set(ds.train.subjects) & set(ds.test.subjects)
    assert ds.test.is_peak.all() and len(ds.test) == 2 * 7
    assert len(ds.train) == 2 * 7 * 3
    arrays = pipeline.eval_arrays(ds)
    assert arrays["x"].shape == (14, 32, 32, 1) and arrays["x"].dtype == np.float32
    assert arrays["x"].min() >= -1.0 and arrays["x"].max() <= 1.0
    assert arrays["y"].dtype == np.int32 and set(arrays["frame"]) == {9}
    # The stored analytic landmarks: one set per face, the inner ones inside the 32 px frame (the
    # renderer's zoom can put the chin below it).
    landmarks = arrays["landmarks"]
    assert landmarks.shape == (14, 68, 2) and landmarks.dtype == np.float32
    inner = landmarks[:, 17:]
    assert np.isfinite(landmarks).all() and (inner > 0).all() and (inner < 32).all()
    assert len({lm.tobytes() for lm in landmarks}) == 14
    assert pipeline.steps_per_epoch(config, ds) == 42 // 8


def test_triplets(built):
    config, ds = built
    lookup = _train_lookup(ds)
    targets = []
    for batch in _take(pipeline.make_train_iterator(config, ds), 12):
        assert batch["x"].shape == (8, 32, 32, 1) and batch["x"].dtype == np.float32
        assert batch["y"].dtype == np.int32 and batch["y_target"].dtype == np.int32
        for x, y, x_pr, t in zip(
            batch["x"], batch["y"], batch["x_pr"], batch["y_target"], strict=True
        ):
            assert lookup[x.tobytes()] == y
            assert lookup[x_pr.tobytes()] == y  # Same class, from the training fold.
            assert not np.array_equal(x, x_pr)  # Every class has 6 training frames here.
            assert t != y and 0 <= t < 7
            targets.append((int(y), int(t)))
    # y_target spreads over the other classes.
    assert len({t for _, t in targets}) == 7


def test_sharding_partitions_the_global_batch(built):
    config, ds = built
    whole = _take(pipeline.make_train_iterator(config, ds), 3)
    parts = [
        _take(pipeline.make_train_iterator(config, ds, process_index=p, process_count=2), 3)
        for p in range(2)
    ]
    for step in range(3):
        for key in ("x", "y", "x_pr", "y_target"):
            a, b = parts[0][step][key], parts[1][step][key]
            assert len(a) == len(b) == 4
            # Process p holds global slots p, p + 2, ...: together exactly the global batch.
            merged = np.stack([a, b], axis=1).reshape(whole[step][key].shape)
            np.testing.assert_array_equal(merged, whole[step][key])
    with pytest.raises(ValueError, match="divisible"):
        pipeline.make_train_iterator(config, ds, process_index=0, process_count=3)


def test_epochs_cover_training_set_and_reshuffle(built):
    config, ds = built
    config = config.copy_and_resolve_references()
    config.train.batch_size = 6  # 42 training frames = 7 steps per epoch.
    lookup_index = {x.tobytes(): i for i, x in enumerate(pipeline.eval_arrays(ds, "train")["x"])}
    batches = _take(pipeline.make_train_iterator(config, ds), 14)
    seen = [lookup_index[x.tobytes()] for b in batches for x in b["x"]]
    assert sorted(seen[:42]) == list(range(42)) and sorted(seen[42:]) == list(range(42))
    assert seen[:42] != seen[42:]


def test_resume_reproduces_batches(built):
    config, ds = built
    it = pipeline.make_train_iterator(config, ds)
    _take(it, 3)
    state = json.loads(json.dumps(it.get_state()))  # Serialisable.
    expected = _take(it, 4)
    fresh = pipeline.make_train_iterator(config, ds)
    fresh.set_state(state)
    for a, b in zip(_take(fresh, 4), expected, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    other = pipeline.make_train_iterator(config, ds)  # Not restored: different batches.
    assert not np.array_equal(next(other)["x"], expected[0]["x"])


def test_flip_and_seed(built):
    config, ds = built
    flipped = config.copy_and_resolve_references()
    flipped.data.flip = True
    a = next(pipeline.make_train_iterator(flipped, ds))
    lookup = _train_lookup(ds)
    n_flipped = sum(x.tobytes() not in lookup and x[:, ::-1].tobytes() in lookup for x in a["x"])
    assert 0 < n_flipped < 8
    reseeded = config.copy_and_resolve_references()
    reseeded.seed = 1
    b = next(pipeline.make_train_iterator(reseeded, ds))
    assert not np.array_equal(b["y"], next(pipeline.make_train_iterator(config, ds))["y"])


def test_worker_processes_match_in_process(built):
    config, ds = built
    multi = config.copy_and_resolve_references()
    multi.data.worker_count = 2
    it = pipeline.make_train_iterator(multi, ds)
    try:
        got = _take(it, 2)
    finally:
        it.close()
    for a, b in zip(got, _take(pipeline.make_train_iterator(config, ds), 2), strict=True):
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["y_target"], b["y_target"])


def test_side_heatmaps_follow_their_faces_through_the_flip(tmp_path):
    from fergan.data import heatmaps

    config = small_config(num_subjects=4, num_folds=2, flip=True)
    ds = pipeline.build_datasets(config, str(tmp_path))
    train = pipeline.eval_arrays(ds, "train")
    by_image = {x.tobytes(): lm for x, lm in zip(train["x"], train["landmarks"], strict=True)}
    plain = _take(pipeline.make_train_iterator(config, ds), 3)
    with_side = _take(pipeline.make_train_iterator(config, ds, features=("side",)), 3)
    flipped = 0
    for a, b in zip(plain, with_side, strict=True):
        assert "s" not in a and b["s"].shape == b["x"].shape  # [b, 32, 32, 1]
        for key in a:  # The side image adds a key and changes nothing else.
            np.testing.assert_array_equal(a[key], b[key])
        for x, s in zip(b["x"], b["s"], strict=True):
            if x.tobytes() in by_image:
                landmarks = by_image[x.tobytes()]
            else:  # A flipped face: its landmarks are the stored face's, mirrored.
                flipped += 1
                landmarks = heatmaps.flip_face(x[:, ::-1], by_image[x[:, ::-1].tobytes()])[1]
            np.testing.assert_array_equal(s, heatmaps.landmark_heatmap(landmarks, 32, 1))
    assert flipped > 0
