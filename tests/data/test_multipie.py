"""The Multi-PIE builder on a fake release tree: expressions from (session, recording), yaw from
the camera, illumination 07 only, subject-independent folds, per-pose accuracy names, and the
layout errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fergan.data import builders, pipeline
from fergan.data.builders import multipie
from fergan.evaluation import heldout
from tests.data.conftest import small_config, write_png

# (subject, session, recording) captured; every one at the five cameras unless listed below.
CAPTURES = [(1, 1, 1), (1, 1, 2), (1, 2, 2), (1, 3, 3), (2, 1, 2), (2, 4, 3), (3, 2, 3), (4, 3, 1)]
MISSING = {(2, 4, 3, "04_1")}  # A camera a subject lacks: skipped.


def make_multipie_tree(root) -> None:
    for subject, session, recording in CAPTURES:
        sid, rec = f"{subject:03d}", f"{recording:02d}"
        for level, camera in enumerate([*multipie.CAMERA_YAW, "19_0"]):  # 19_0: not read.
            if (subject, session, recording, camera) in MISSING:
                continue
            folder = root / f"session{session:02d}" / "multiview" / sid / rec / camera
            for light in (0, multipie.ILLUMINATION):  # Only 07 is read.
                name = f"{sid}_{session:02d}_{rec}_{camera.replace('_', '')}_{light:02d}.png"
                write_png(folder / name, 30 + 30 * level + light)


def multipie_config(manual):
    config = small_config(name="multipie", manual_dir=str(manual))
    config.model.num_classes = 6
    return config


def test_multipie_reads_expressions_poses_and_one_illumination(tmp_path, data_dir):
    make_multipie_tree(tmp_path / "mpie")
    config = multipie_config(tmp_path / "mpie")
    builder = builders.make_builder(config, data_dir)
    builders.prepare(builder, config.data.manual_dir)
    source = builder.as_data_source(builders.SPLIT)
    rows = [source[i] for i in range(len(source))]
    assert len(rows) == 5 * len(CAPTURES) - len(MISSING)
    names = multipie.CLASS_NAMES
    got = {(int(r["subject"]), names[int(r["label"])], int(r["pose"])) for r in rows}
    assert (1, "neutral", 0) in got and (1, "smile", -30) in got and (1, "surprise", 30) in got
    assert (1, "disgust", 15) in got and (2, "scream", -15) in got and (3, "squint", 0) in got
    assert (2, "scream", 30) not in got  # The missing camera.
    assert {int(r["pose"]) for r in rows} == {-30, -15, 0, 15, 30}
    assert all(bool(r["is_peak"]) for r in rows)  # Single images: each its own peak.
    # The folds split subjects, whatever their sessions.
    datasets = pipeline.build_datasets(config, data_dir)
    assert not set(datasets.train.subjects) & set(datasets.test.subjects)
    test = pipeline.eval_arrays(datasets, "test")
    per_pose = heldout.pose_accuracies(test["y"], test["y"], test["pose"])
    assert per_pose == {f"accuracy_pose_{p}": 1.0 for p in np.unique(datasets.test.poses)}


def test_multipie_layout_errors_name_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No session0<N>/multiview folders"):
        builders.example_subjects(
            multipie_config(tmp_path / "empty"),
            builders.builder_config(multipie_config(tmp_path / "empty")),
        )
    bad = tmp_path / "bad"
    write_png(bad / "session01" / "multiview" / "001" / "03" / "05_1" / "x.png", 10)
    config = multipie_config(bad)
    with pytest.raises(Exception, match=re.escape("session 1 has no recording 3")):
        builders.example_subjects(config, builders.builder_config(config))
