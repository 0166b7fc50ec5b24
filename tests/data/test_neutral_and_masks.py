"""Neutral first frames (ECGAN's domain X) and the face `mask` feature, in every builder that has
them, and their fold split."""

from __future__ import annotations

import numpy as np
import pytest

from fergan.data import builders, face_renderer, masks, pipeline
from tests.data.conftest import make_ck_tree, small_config, write_landmarks, write_png


def _rows(config, data_dir):
    builder = builders.make_builder(config, data_dir)
    builders.prepare(builder, config.data.manual_dir)
    source = builder.as_data_source(builders.SPLIT)
    rows = [source[i] for i in range(len(source))]
    return sorted(rows, key=lambda r: (int(r["sequence"]), int(r["frame"]), bool(r["neutral"])))


def test_ck_plus_first_frames_are_neutral(tmp_path, data_dir):
    manual = tmp_path / "ck"
    # A 5-frame and a 2-frame sequence: the short one's first frame is labelled, so no neutral.
    make_ck_tree(manual, {(5, 1): (5, 3), (11, 5): (2, 1)})
    config = small_config(name="ck_plus", manual_dir=str(manual), neutral_first_frames=True)
    got = [
        (int(r["sequence"]), int(r["frame"]), int(r["label"]), bool(r["neutral"]))
        for r in _rows(config, data_dir)
    ]
    assert got == [
        (5001, 1, 2, True),  # The first frame, with its sequence's label.
        (5001, 3, 2, False),
        (5001, 4, 2, False),
        (5001, 5, 2, False),
        (11005, 1, 0, False),
        (11005, 2, 0, False),
    ]
    # Without the option, the labelled frames alone, under another dataset name.
    plain = small_config(name="ck_plus", manual_dir=str(manual))
    assert builders.builder_config(plain).name != builders.builder_config(config).name
    assert [bool(r["neutral"]) for r in _rows(plain, data_dir)] == [False] * 5


def test_ck_plus_neutral_frame_reads_its_landmark_file(tmp_path, data_dir):
    manual = tmp_path / "ck"
    make_ck_tree(manual, {(5, 1): (4, 3)})
    identity = face_renderer.sample_identity(np.random.default_rng(0))
    points = face_renderer.face_landmarks(identity, None, 0.0, 40)
    for f in (1, 2, 3, 4):
        name = f"S005_001_{f:08d}_landmarks.txt"
        write_landmarks(manual / "Landmarks" / "S005" / "001" / name, points + f)
    config = small_config(
        name="ck_plus", manual_dir=str(manual), neutral_first_frames=True, align="none"
    )
    rows = _rows(config, data_dir)
    neutral = next(r for r in rows if r["neutral"])
    frame_3 = next(r for r in rows if int(r["frame"]) == 3)
    # Frame 1's file (points + 1), not another frame's: 2 px from frame 3's at 40 px, 1.6 at 32.
    np.testing.assert_allclose(frame_3["landmarks"] - neutral["landmarks"], 1.6, atol=1e-3)
    assert neutral["mask"].any() and not neutral["mask"].all()


def test_oulu_first_frames_are_neutral(tmp_path, data_dir):
    manual = tmp_path / "oulu"
    for f in range(5):
        write_png(manual / "P001" / "Anger" / f"{f:03d}.jpeg", 20 * f + 10)
    config = small_config(name="oulu_casia", manual_dir=str(manual), neutral_first_frames=True)
    config.model.num_classes = 6
    rows = _rows(config, data_dir)
    assert [(int(r["frame"]), bool(r["neutral"])) for r in rows] == [
        (0, True), (2, False), (3, False), (4, False)
    ]  # fmt: skip
    assert rows[0]["image"].mean() < rows[1]["image"].mean()  # The first (darkest) frame.


def test_expression_folder_neutral_frames_need_sequences(tmp_path, data_dir):
    config = small_config(name="expression_folder", neutral_first_frames=True)
    with pytest.raises(ValueError, match=r"only with data\.sequence_regex"):
        builders.builder_config(config)
    manual = tmp_path / "folder"
    for f in range(4):
        write_png(manual / "happy" / f"S001_002_{f:03d}.png", 20 * f + 10)
    config = small_config(
        name="expression_folder",
        manual_dir=str(manual),
        neutral_first_frames=True,
        class_names="happy,sad",
        sequence_regex=r"_(?P<sequence>\d+)_(?P<frame>\d+)",
    )
    (manual / "sad").mkdir()
    write_png(manual / "sad" / "S002_001_000.png", 99)
    write_png(manual / "sad" / "S002_001_001.png", 99)
    config.model.num_classes = 2
    got = [(int(r["frame"]), bool(r["neutral"])) for r in _rows(config, data_dir)]
    # happy: frame 0 neutral, 1..3 labelled; sad's 2-frame sequence is all labelled.
    assert sorted(got) == [(0, False), (0, True), (1, False), (1, False), (2, False), (3, False)]


def test_synthetic_neutral_frames_and_folds(data_dir):
    config = small_config(neutral_first_frames=True)
    with_neutral = pipeline.build_datasets(config, data_dir)
    without = pipeline.build_datasets(small_config(), data_dir)
    # The labelled frames and folds are unchanged; every sequence adds one neutral frame.
    np.testing.assert_array_equal(with_neutral.train.sequences, without.train.sequences)
    np.testing.assert_array_equal(with_neutral.test.subjects, without.test.subjects)
    np.testing.assert_array_equal(with_neutral.train.image(0), without.train.image(0))
    k = len(face_renderer.EXPRESSIONS)
    assert len(with_neutral.train_neutral) == with_neutral.num_train_subjects * k
    assert len(with_neutral.test_neutral) == with_neutral.num_test_subjects * k
    assert set(with_neutral.train_neutral.subjects) == set(with_neutral.train.subjects)
    assert set(with_neutral.test_neutral.subjects) == set(with_neutral.test.subjects)
    assert (with_neutral.train_neutral.frames == 0).all() and len(without.train_neutral) == 0
    # A neutral frame is the sequence's intensity-0 render: its mouth region differs from the
    # apex of the same sequence.
    row = with_neutral.train_neutral[0]
    assert row["neutral"] and not row["is_peak"]
    # The renderer's face mask: inside the outline, about a third of the image at this framing.
    fraction = (row["mask"] > 0).mean()
    assert 0.2 < fraction < 0.8, fraction


def test_synthetic_neutral_needs_an_unlabelled_first_frame():
    with pytest.raises(ValueError, match=r"data\.label_last_frames"):
        next(face_renderer.generate(0, 1, 32, 3, 3, neutral_first_frames=True))


def test_landmark_mask_covers_the_face_and_the_forehead():
    size = 64
    identity = face_renderer.sample_identity(np.random.default_rng(0))
    points = face_renderer.face_landmarks(identity, None, 0.0, size)
    mask = masks.landmark_face_mask(points, size)
    x, y = np.round(points).astype(int).T
    # Every landmark is inside (the dilated hull), and so is the forehead above the brows.
    assert mask[y.clip(0, size - 1), x.clip(0, size - 1)].all()
    brow_top = int(points[17:27, 1].min())
    centre = round(float(points[27, 0]))
    assert mask[brow_top - 3, centre]
    # The corners are background, and the mask tracks the renderer's own outline.
    assert not mask[0, 0] and not mask[-1, 0] and not mask[-1, -1]
    analytic = face_renderer.face_mask(identity, size)
    iou = (mask & analytic).sum() / (mask | analytic).sum()
    assert iou > 0.7, iou


def test_landmark_mask_without_landmarks_is_the_whole_image():
    points = np.full((68, 2), np.nan, np.float32)
    assert masks.landmark_face_mask(points, 32).all()
    with pytest.raises(ValueError, match="landmarks must have shape"):
        masks.landmark_face_mask(np.zeros((5, 2)), 32)


def batches_without_and_with(data_dir, features, count):
    """(datasets, `count` batches without `features`, the same batches with them) of a small
    synthetic set with neutral frames and flips."""
    config = small_config(neutral_first_frames=True, flip=True)
    ds = pipeline.build_datasets(config, data_dir)
    take = lambda it: [next(it) for _ in range(count)]
    plain = take(pipeline.make_train_iterator(config, ds))
    return ds, plain, take(pipeline.make_train_iterator(config, ds, features=features))


def test_batches_carry_masks_and_neutral_faces_flipped_with_them(data_dir):
    ds, plain, full = batches_without_and_with(data_dir, ("mask", "neutral"), 3)
    stored = {}
    for source in (ds.train, ds.train_neutral):
        for i in range(len(source)):
            row = source[i]
            stored[row["image"].tobytes()] = row["mask"][..., 0] > 127
    neutral_images = {ds.train_neutral.image(i).tobytes() for i in range(len(ds.train_neutral))}
    flipped = 0
    for a, b in zip(plain, full, strict=True):
        for key in a:  # The features add keys and change nothing else.
            np.testing.assert_array_equal(a[key], b[key])
        for face, mask, is_neutral in [
            *zip(b["x"], b["mask"], [False] * len(b["x"]), strict=True),
            *zip(b["x_neutral"], b["mask_neutral"], [True] * len(b["x"]), strict=True),
        ]:
            image = np.round((face + 1) * 127.5).astype(np.uint8)
            if image.tobytes() not in stored:
                image, mask = image[:, ::-1], mask[:, ::-1]
                flipped += 1
            assert (image.tobytes() in neutral_images) == is_neutral
            np.testing.assert_array_equal(mask[..., 0] > 0.5, stored[image.tobytes()])
    assert flipped > 0
    with pytest.raises(ValueError, match="neutral_first_frames=True"):
        pipeline.make_train_iterator(small_config(), pipeline.build_datasets(small_config(),
                                     data_dir), features=("neutral",))  # fmt: skip


def test_pairs_are_the_subjects_target_faces_and_own_neutral_flipped_with_x(data_dir):
    ds, plain, paired = batches_without_and_with(data_dir, ("pair", "own_neutral"), 4)
    # Stored image bytes -> (subject, label, sequence) of the labelled and the neutral frames.
    labelled, neutral = {}, {}
    for source, table in ((ds.train, labelled), (ds.train_neutral, neutral)):
        for i in range(len(source)):
            key = (int(source.subjects[i]), int(source.labels[i]), int(source.sequences[i]))
            table[source.image(i).tobytes()] = key
    as_stored = lambda face, flip: np.round((face[:, ::-1] if flip else face) * 127.5 + 127.5)

    def find(face, table):
        """(record, flipped) of a batch face in `table`."""
        for flip in (False, True):
            image = as_stored(face, flip).astype(np.uint8).tobytes()
            if image in table:
                return table[image], flip
        raise AssertionError("a batch face is not a stored face of its kind")

    flips = set()
    for a, b in zip(plain, paired, strict=True):
        for key in a:  # The features add keys and change nothing else.
            np.testing.assert_array_equal(a[key], b[key])
        assert b["pair_valid"].all() and b["own_neutral_valid"].all()
        for i in range(len(b["x"])):
            (subject, label, sequence), flipped = find(b["x"][i], labelled)
            pair, pair_flipped = find(b["x_pair"][i], labelled)
            assert pair[:2] == (subject, int(b["y_target"][i])) and pair_flipped == flipped
            own, own_flipped = find(b["x_own_neutral"][i], neutral)
            assert own == (subject, label, sequence) and own_flipped == flipped
            flips.add(flipped)
    assert flips == {False, True}
    with pytest.raises(ValueError, match="neutral_first_frames=True"):
        pipeline.make_train_iterator(small_config(), pipeline.build_datasets(small_config(),
                                     data_dir), features=("own_neutral",))  # fmt: skip
