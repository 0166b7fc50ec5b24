"""Real-database builders on tiny fake trees, and their bad-input errors."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from fergan.data import builders, face_renderer, pipeline, preprocess
from tests.data import make_image_tree
from tests.data.conftest import make_ck_tree, prepared_files, small_config, write_png


def _rows(config, data_dir):
    builder = builders.make_builder(config, data_dir)
    builders.prepare(builder, config.data.manual_dir)
    source = builder.as_data_source(builders.SPLIT)
    rows = [source[i] for i in range(len(source))]
    return sorted(rows, key=lambda r: (int(r["sequence"]), int(r["frame"])))


def test_ck_plus(tmp_path, data_dir):
    manual = tmp_path / "ck"
    # (subject, sequence): (frames, emotion code); S011/002 is unlabelled and must be skipped.
    make_ck_tree(manual, {(5, 1): (5, 3), (10, 4): (4, 7), (11, 2): (3, None), (11, 5): (2, 1)})
    config = small_config(name="ck_plus", manual_dir=str(manual))
    rows = _rows(config, data_dir)
    got = [
        (
            int(r["subject"]),
            int(r["sequence"]),
            int(r["frame"]),
            int(r["label"]),
            bool(r["is_peak"]),
        )
        for r in rows
    ]
    assert got == [
        (5, 5001, 3, 2, False),  # code 3 = disgust = class 2; frames 3..5 of 5.
        (5, 5001, 4, 2, False),
        (5, 5001, 5, 2, True),
        (10, 10004, 2, 6, False),  # code 7 = surprise.
        (10, 10004, 3, 6, False),
        (10, 10004, 4, 6, True),
        (11, 11005, 1, 0, False),  # Only 2 frames: both labelled.
        (11, 11005, 2, 0, True),
    ]
    # The image content follows the frame (fake frames have mean level ~ frame * 10).
    assert rows[0]["image"].shape == (32, 32, 1)
    assert rows[0]["image"].mean() < rows[2]["image"].mean()


def test_oulu_casia(tmp_path, data_dir):
    manual = tmp_path / "oulu"
    for subj in (1, 2):
        for folder, n in (("Anger", 4), ("Surprise", 3)):
            for f in range(n):
                write_png(manual / f"P{subj:03d}" / folder / f"{f:03d}.jpeg", 20 * f + 10)
    config = small_config(name="oulu_casia", manual_dir=str(manual))
    config.model.num_classes = 6
    rows = _rows(config, data_dir)
    assert len(rows) == 12
    assert {int(r["subject"]) for r in rows} == {1, 2}
    anger = [r for r in rows if int(r["label"]) == 0 and int(r["subject"]) == 1]
    assert [int(r["frame"]) for r in anger] == [1, 2, 3]
    assert [bool(r["is_peak"]) for r in anger] == [False, False, True]
    assert {int(r["label"]) for r in rows} == {0, 5}  # anger, surprise.


def test_expression_folder_with_sequences(tmp_path, data_dir):
    manual = tmp_path / "folder"
    for cls, subj, seq in (("happy", 10, 4), ("sad", 10, 6), ("sad", 22, 1)):
        for f in range(1, 6):
            write_png(manual / cls / f"S{subj:03d}_{seq:03d}_{f:08d}.png", 40 * f)
    config = small_config(
        name="expression_folder",
        manual_dir=str(manual),
        sequence_regex=r"^S\d+_(?P<sequence>\d+)_(?P<frame>\d+)",
        label_last_frames=2,
    )
    config.model.num_classes = 2
    rows = _rows(config, data_dir)
    got = sorted(
        (int(r["label"]), int(r["subject"]), int(r["frame"]), bool(r["is_peak"])) for r in rows
    )
    assert got == [
        (0, 10, 4, False),
        (0, 10, 5, True),
        (1, 10, 4, False),
        (1, 10, 5, True),
        (1, 22, 4, False),
        (1, 22, 5, True),
    ]
    assert len({int(r["sequence"]) for r in rows}) == 3


def test_expression_folder_listed_classes_no_sequences(tmp_path, data_dir):
    manual = tmp_path / "folder"
    write_png(manual / "b" / "alice_1.png", 10)
    write_png(manual / "b" / "bob_1.png", 20)
    write_png(manual / "a" / "bob_2.png", 30)
    config = small_config(
        name="expression_folder",
        manual_dir=str(manual),
        class_names="b,a",
        subject_regex=r"^(?P<subject>[a-z]+)_",
    )
    config.model.num_classes = 2
    rows = _rows(config, data_dir)
    got = sorted((int(r["label"]), int(r["subject"])) for r in rows)
    assert got == [(0, 0), (0, 1), (1, 1)]  # 'b' listed first; alice=0, bob=1 (sorted names).
    assert all(r["is_peak"] for r in rows)


def _assert_nothing_prepared(data_dir):
    assert prepared_files(data_dir) == []


def test_missing_manual_dir_points_to_layout(tmp_path, data_dir):
    config = small_config(name="ck_plus", manual_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"data\.manual_dir=.*nowhere.*docs/data\.md"):
        pipeline.build_datasets(config, data_dir)
    assert not os.path.exists(data_dir)


def test_truncated_image(tmp_path, data_dir):
    manual = tmp_path / "ck"
    make_ck_tree(manual, {(5, 1): (4, 3), (6, 1): (4, 1)})
    bad = manual / "cohn-kanade-images" / "S006" / "001" / "S006_001_00000004.png"
    bad.write_bytes(bad.read_bytes()[:60])
    config = small_config(name="ck_plus", manual_dir=str(manual))
    with pytest.raises(Exception, match=r"S006_001_00000004\.png"):
        builders.prepare(builders.make_builder(config, data_dir), str(manual))
    _assert_nothing_prepared(data_dir)


def test_out_of_range_emotion(tmp_path, data_dir):
    manual = tmp_path / "ck"
    make_ck_tree(manual, {(5, 1): (4, 3), (6, 1): (4, 9)})
    config = small_config(name="ck_plus", manual_dir=str(manual))
    with pytest.raises(ValueError, match=r"S006_001_00000004_emotion.txt.*9"):
        builders.prepare(builders.make_builder(config, data_dir), str(manual))
    _assert_nothing_prepared(data_dir)


def test_empty_class_folder(tmp_path, data_dir):
    manual = tmp_path / "folder"
    write_png(manual / "happy" / "S001_001_00000001.png", 10)
    os.makedirs(manual / "sad")
    config = small_config(name="expression_folder", manual_dir=str(manual))
    config.model.num_classes = 2
    with pytest.raises(ValueError, match=r"Class folder '.*sad' holds no images"):
        pipeline.build_datasets(config, data_dir)
    _assert_nothing_prepared(data_dir)


def test_fewer_subjects_than_folds(tmp_path, data_dir):
    manual = tmp_path / "ck"
    make_ck_tree(manual, {(5, 1): (3, 3), (6, 1): (3, 1), (7, 1): (3, 2)})
    config = small_config(name="ck_plus", manual_dir=str(manual), num_folds=10)
    with pytest.raises(ValueError, match=r"data\.num_folds=10 exceeds the 3 distinct subjects"):
        pipeline.build_datasets(config, data_dir)
    assert not os.path.exists(data_dir)  # Refused before the build.


def test_num_classes_mismatch(data_dir):
    config = small_config()
    config.model.num_classes = 6
    with pytest.raises(ValueError, match=r"model.num_classes=6.*7 classes"):
        pipeline.build_datasets(config, data_dir)


def _face_frame(level: int) -> np.ndarray:
    """An 80x120 frame with a bright 40x40 "face" at rows 20-60, columns 70-110 (off-centre)."""
    image = np.full((80, 120), 30, np.uint8)
    image[20:60, 70:110] = level
    image[30:35, 80:100] = 0  # A feature inside the face, so the crop position shows.
    return image


def test_face_crop_cuts_the_detected_box(tmp_path, data_dir, monkeypatch):
    manual = tmp_path / "ck"
    make_ck_tree(manual, {(5, 1): (3, 3)})
    frames = sorted((manual / "cohn-kanade-images").rglob("*.png"))
    levels = [150 + 30 * f for f in range(len(frames))]
    for path, level in zip(frames, levels, strict=True):
        assert cv2.imwrite(os.fspath(path), _face_frame(level))
    peaks = []

    def detect(gray, min_side):  # Stands for the cascade: the face at x 70, y 20, 40 x 40.
        peaks.append(int(gray[40, 90]))
        return [(70, 20, 40, 40)]

    monkeypatch.setattr(preprocess, "_detector", lambda: detect)
    box = (12, 62, 56, 56)  # The 40 px face grown by face_margin 0.2 on each side, same centre.
    assert preprocess.detect_face(_face_frame(levels[-1]), margin=0.2) == box
    config = small_config(name="ck_plus", manual_dir=str(manual), crop_face=True)
    rows = _rows(config, data_dir)
    assert peaks == [levels[-1]] * 2  # One detection per sequence, on its peak frame.
    assert len(rows) == 3
    for row, level in zip(rows, levels, strict=True):
        frame = _face_frame(level)
        face = preprocess.to_channels(preprocess.crop_and_resize(frame, 32, box), 1)
        np.testing.assert_array_equal(row["image"], face)
        # The face fills the middle with background at the corners; not the central square.
        assert row["image"][16, 16, 0] == level and row["image"][0, 0, 0] == 30
        square = preprocess.crop_and_resize(frame, 32, preprocess.central_box(frame))
        assert not np.array_equal(row["image"], preprocess.to_channels(square, 1))


def test_detect_face_finds_a_rendered_face():
    identity = face_renderer.sample_identity(np.random.default_rng(2))
    face = (face_renderer.render_face(identity, None, 0.0, 96) * 255).astype(np.uint8)
    canvas = np.full((240, 320), 128, np.uint8)
    canvas[100:196, 180:276] = face  # Off-centre, so the central-square fallback would miss it.
    top, left, side, _ = preprocess.detect_face(canvas, margin=0.0)
    if (top, left) == ((240 - 240) // 2, (320 - 240) // 2):
        pytest.skip("cascade does not fire on the cartoon face; fallback path only")
    assert 60 <= top + side / 2 <= 236 and 140 <= left + side / 2 <= 316


def test_generated_image_tree_is_detected_and_cropped(tmp_path, data_dir):
    manual = tmp_path / "faces"
    paths = make_image_tree.write_image_tree(manual, num_subjects=3)
    assert len(paths) == 3 * 7
    # After decoding from disk, as the builder sees them.
    assert all(preprocess.find_face(preprocess.decode_image(p)) is not None for p in paths)
    config = small_config(name="expression_folder", manual_dir=str(manual), crop_face=True)
    config.data.num_folds = 3
    datasets = pipeline.build_datasets(config, data_dir)
    assert datasets.class_names == face_renderer.EXPRESSIONS
    assert len(datasets.train) == 2 * 7 and len(datasets.test) == 7
    # The crop keeps the face: its centre is no longer the gray canvas.
    x = pipeline.eval_arrays(datasets)["x"]
    assert x.shape == (7, 32, 32, 1) and np.abs(x[:, 12:20, 12:20]).mean() > 0.0
