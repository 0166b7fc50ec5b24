"""fergan.files: atomic writes leave either the whole new file or nothing new."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from fergan import files


def test_failed_write_leaves_no_target_and_no_tmp(tmp_path):
    path = os.fspath(tmp_path / "out.json")

    def half_then_fail(tmp):
        with open(tmp, "w") as f:
            f.write('{"partial": ')
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash mid-write"):
        files.atomic_write(path, half_then_fail)
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = os.fspath(tmp_path / "out.json")
    files.write_json(path, {"old": 1})

    def truncate_then_fail(tmp):
        open(tmp, "w").close()
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(path, truncate_then_fail)
    assert os.listdir(tmp_path) == ["out.json"]
    with open(path) as f:
        assert json.load(f) == {"old": 1}


def test_tmp_name_keeps_the_suffix_and_folder_is_made(tmp_path):
    seen = []
    path = os.fspath(tmp_path / "new" / "figure.png")
    files.atomic_write(path, lambda tmp: (seen.append(tmp), open(tmp, "wb").close()))
    assert seen[0].endswith("figure.png") and os.path.dirname(seen[0]) == os.path.dirname(path)
    assert os.listdir(tmp_path / "new") == ["figure.png"]


def test_json_round_trip_sorted_and_indented(tmp_path):
    path = os.fspath(tmp_path / "r.json")
    payload = {"b": [1, 2.5], "a": {"z": None, "y": "text"}, "nan": float("nan")}
    files.write_json(path, payload)
    with open(path) as f:
        text = f.read()
    assert text == json.dumps(payload, indent=2, sort_keys=True)
    back = json.loads(text)
    assert math.isnan(back.pop("nan"))
    assert back == {"a": {"y": "text", "z": None}, "b": [1, 2.5]}


@pytest.mark.parametrize("name", ["features.npz", "features"])
def test_npz_round_trip(tmp_path, name):
    path = os.fspath(tmp_path / name)
    arrays = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "y": np.array([1, 0, 2])}
    files.save_npz(path, **arrays)
    assert os.listdir(tmp_path) == [name]  # No `.npz` appended, nothing left beside it.
    with np.load(path) as loaded:
        assert sorted(loaded.files) == ["x", "y"]
        for k, v in arrays.items():
            np.testing.assert_array_equal(loaded[k], v)
            assert loaded[k].dtype == v.dtype
