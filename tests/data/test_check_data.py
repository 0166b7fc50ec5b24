"""Validation before any write (`pipeline.check_data`), one-line errors, and datasets keyed by
their source folder's listing."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from fergan.data import builders, pipeline, preprocess
from fergan.data.builders import base
from tests.data.conftest import small_config, write_png


def _folder_config(manual, **data):
    config = small_config(name="expression_folder", manual_dir=str(manual), **data)
    config.model.num_classes = 2
    config.train.batch_size = 2
    return config


def _write_tree(manual, subjects, value=40):
    for cls in ("happy", "sad"):
        for s in subjects:
            write_png(manual / cls / f"S{s:03d}_001_00000001.png", value + s)


def _dataset_dirs(data_dir):
    root = os.path.join(data_dir, "expression_folder")
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def _mean_levels(datasets):
    arrays = pipeline.eval_arrays(datasets, "train")
    return sorted(np.round(arrays["x"].mean(axis=(1, 2, 3)), 3).tolist())


def test_source_digest_follows_the_listing(tmp_path):
    manual = tmp_path / "faces"
    _write_tree(manual, [1, 2])
    digest = base.source_digest(str(manual))
    assert base.source_digest(str(manual)) == digest  # Nothing changed.
    path = manual / "happy" / "S001_001_00000001.png"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))  # Same bytes, rewritten.
    touched = base.source_digest(str(manual))
    write_png(manual / "sad" / "S003_001_00000001.png", 90)
    added = base.source_digest(str(manual))
    os.remove(manual / "sad" / "S002_001_00000001.png")
    removed = base.source_digest(str(manual))
    os.rename(manual, tmp_path / "moved")
    moved = base.source_digest(str(tmp_path / "moved"))
    assert len({digest, touched, added, removed, moved}) == 5
    assert base.source_listing(str(tmp_path / "moved"))[0] == (
        os.path.join("happy", "S001_001_00000001.png"),
        st.st_size,
        st.st_mtime_ns + 1000,
    )


def test_changed_file_gives_a_new_build(tmp_path, data_dir):
    manual = tmp_path / "faces"
    _write_tree(manual, [1, 2, 3, 4])
    config = _folder_config(manual)
    before = _mean_levels(pipeline.build_datasets(config, data_dir))
    assert len(_dataset_dirs(data_dir)) == 1
    _write_tree(manual, [1, 2, 3, 4], value=140)  # Same names and sizes, new content.
    after = _mean_levels(pipeline.build_datasets(config, data_dir))
    assert len(_dataset_dirs(data_dir)) == 2  # Built anew, the stale build left aside.
    assert after != before and min(after) > max(before)


def test_bad_folds_refused_before_any_write_then_fixed_folder_builds(tmp_path, data_dir):
    manual = tmp_path / "faces"
    _write_tree(manual, [7])
    config = _folder_config(manual, num_folds=10)
    with pytest.raises(ValueError, match=r"data\.num_folds=10 exceeds the 1 distinct subjects"):
        pipeline.check_data(config)
    with pytest.raises(ValueError, match=r"data\.num_folds=10"):
        pipeline.build_datasets(config, data_dir)
    assert not os.path.exists(data_dir)
    _write_tree(manual, range(8, 17))  # Ten subjects now.
    pipeline.check_data(config)
    datasets = pipeline.build_datasets(config, data_dir)
    assert len(datasets.train) + len(datasets.test) == 20  # The fixed folder, not a stale build.
    assert datasets.num_train_subjects == 9 and datasets.num_test_subjects == 1


@pytest.mark.parametrize("batch_size", [0, -3, 5000])
def test_bad_batch_size(batch_size, data_dir):
    config = small_config()  # 4 subjects, 2 folds: 2 training subjects x 7 classes x 3 frames.
    config.train.batch_size = batch_size
    message = rf"^train\.batch_size={batch_size} must be in \[1, 42\]"
    with pytest.raises(ValueError, match=message):
        pipeline.check_data(config)
    with pytest.raises(ValueError, match=message):
        pipeline.build_datasets(config, data_dir)
    assert not os.path.exists(data_dir)


def test_steps_per_epoch_refuses_bad_batch_size(data_dir):
    config = small_config()
    datasets = pipeline.build_datasets(config, data_dir)
    for batch_size in (0, 43):
        config.train.batch_size = batch_size
        with pytest.raises(ValueError, match=rf"train\.batch_size={batch_size}.*42"):
            pipeline.steps_per_epoch(config, datasets)
    config.train.batch_size = 42
    assert pipeline.steps_per_epoch(config, datasets) == 1


def _no_cascade(monkeypatch):
    monkeypatch.delattr(preprocess.cv2, "CascadeClassifier", raising=False)
    monkeypatch.setitem(sys.modules, "skimage", None)  # Import fails as if not installed.
    preprocess._detector.cache_clear()


def _cases(tmp_path):
    """(config change, expected exception type, text the one-line message must name)."""
    good = tmp_path / "good"
    _write_tree(good, [1, 2, 3])
    one_class = tmp_path / "one_class"
    write_png(one_class / "happy" / "S001_001_00000001.png", 10)
    write_png(one_class / "happy" / "S002_001_00000001.png", 20)
    unmatched = tmp_path / "unmatched"
    _write_tree(unmatched, [1, 2])
    write_png(unmatched / "sad" / "portrait.png", 30)
    folder = {"data.name": "expression_folder", "model.num_classes": 2}
    return {
        "unknown name": ({"data.name": "ck"}, ValueError, "data.name"),
        "empty manual_dir": ({"data.name": "ck_plus"}, FileNotFoundError, "data.manual_dir"),
        "missing manual_dir": (
            {"data.name": "oulu_casia", "data.manual_dir": str(tmp_path / "nowhere")},
            FileNotFoundError,
            "nowhere",
        ),
        "wrong layout": (
            {"data.name": "ck_plus", "data.manual_dir": str(good)},
            FileNotFoundError,
            "cohn-kanade-images",
        ),
        "bad regex": (
            {**folder, "data.manual_dir": str(good), "data.subject_regex": "S(\\d+"},
            ValueError,
            "data.subject_regex",
        ),
        "unmatched file": (
            {**folder, "data.manual_dir": str(unmatched)},
            preprocess.DataError,
            "portrait.png",
        ),
        "num_classes": ({"model.num_classes": 5}, ValueError, "model.num_classes=5"),
        "one class": (
            {**folder, "data.manual_dir": str(one_class), "model.num_classes": 1},
            ValueError,
            "at least 2 classes",
        ),
        "num_folds": ({"data.num_folds": 9}, ValueError, "data.num_folds=9"),
        "fold": ({"data.fold": 2}, ValueError, "data.fold"),
        "batch_size": ({"train.batch_size": 0}, ValueError, "train.batch_size=0"),
        "label_last_frames": (
            {"data.label_last_frames": 11},
            ValueError,
            "data.label_last_frames",
        ),
        "image_size": ({"model.image_size": 8}, ValueError, "model.image_size"),
    }


def test_every_data_error_is_one_line_naming_the_key_or_file(tmp_path, data_dir):
    for case, (changes, error, named) in _cases(tmp_path).items():
        config = small_config()
        config.train.batch_size = 2
        for key, value in changes.items():
            section, name = key.split(".")
            setattr(config[section], name, value)
        with pytest.raises(error) as info:
            pipeline.check_data(config)
        message = str(info.value)
        assert "\n" not in message and named in message, (case, message)
    assert not os.path.exists(data_dir)


def test_missing_cascade_is_a_one_line_data_error_before_any_write(monkeypatch, tmp_path, data_dir):
    _no_cascade(monkeypatch)
    _write_tree(tmp_path / "faces", [1, 2])
    config = _folder_config(tmp_path / "faces", crop_face=True)
    try:
        with pytest.raises(preprocess.DataError, match=r"data\.crop_face") as info:
            pipeline.build_datasets(config, data_dir)
        with pytest.raises(preprocess.DataError, match=r"data\.crop_face"):
            preprocess.detect_face(np.zeros((64, 64), np.uint8))
    finally:
        preprocess._detector.cache_clear()  # The real detector for later tests.
    assert "\n" not in str(info.value) and "scikit-image" in str(info.value)
    assert not os.path.exists(data_dir)


def test_example_subjects_match_the_build(tmp_path, data_dir):
    manual = tmp_path / "faces"
    _write_tree(manual, [3, 5, 9])
    for config in (small_config(), _folder_config(manual)):
        face_config = builders.builder_config(config)
        expected = builders.example_subjects(config, face_config)
        builder = builders.make_builder(config, data_dir)
        builders.prepare(builder, config.data.manual_dir)
        source = builder.as_data_source(builders.SPLIT)
        got = sorted(int(source[i]["subject"]) for i in range(len(source)))
        assert got == sorted(expected.tolist())
