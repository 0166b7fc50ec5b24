"""compare_runs on real tiny runs: same seed is bit-identical, another seed is not."""

import json

import numpy as np
import pytest

from fergan import train
from fergan.tools import compare_runs
from tests.program.helpers import tiny_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny BASELINE runs (the cheapest to compile): seed 0 twice, seed 1 once, on the
    same data; 5 steps, checkpoints at steps 4 and 5."""
    root = tmp_path_factory.mktemp("compare")
    data_dir = str(root / "tfds")
    folders = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        config = tiny_config("BASELINE", data_dir=data_dir)
        config.seed = seed
        config.data.synthetic_seed = 0  # One dataset for all three.
        folders[name] = str(root / name)
        train.train_and_evaluate(config, folders[name])
    return folders


def report_of(capsys, *argv) -> tuple[int, str, dict | None]:
    code = compare_runs.main(list(argv))
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    return code, out.out + out.err, json.loads(lines[-1]) if code == 0 else None


def test_same_seed_is_bit_identical(runs, capsys):
    code, text, report = report_of(capsys, runs["a"], runs["b"])
    assert code == 0
    assert report["identical"] and report["data_state_identical"]
    assert report["step_a"] == report["step_b"] == 5
    assert set(report["networks"]) == set(compare_runs.STATE_KEYS)
    for name, part in report["networks"].items():
        assert part["identical"] and part["max_abs_diff"] == 0.0 and not part["mismatched"], name
    for section in ("eval", "train_last_step"):
        assert report["metrics"][section]
        assert all(m["diff"] == 0 for m in report["metrics"][section].values())
    assert "All state bit-identical: yes" in text


def test_another_seed_differs(runs, capsys):
    code, text, report = report_of(capsys, runs["a"], runs["c"])
    assert code == 0  # A difference is a finding, not an error.
    assert not report["identical"]
    for name in ("g", "dimg", "dz", "r", "identity"):
        assert report["networks"][name]["params_max_abs_diff"] > 0, name
    assert report["networks"]["step"]["identical"]
    assert not report["networks"]["rng"]["identical"]
    assert "All state bit-identical: no" in text


def test_a_chosen_step(runs, capsys):
    code, _, report = report_of(capsys, runs["a"], runs["b"], "--step", "4")
    assert code == 0 and report["step_a"] == report["step_b"] == 4 and report["identical"]
    code, text, _ = report_of(capsys, runs["a"], runs["b"], "--step", "3")
    assert code == 2 and "no checkpoint at step 3; it has [4, 5]" in text


def test_missing_runs_exit_2(runs, capsys, tmp_path):
    code, text, _ = report_of(capsys, runs["a"], str(tmp_path / "nowhere"))
    assert code == 2 and "no such run folder" in text
    code, text, _ = report_of(capsys, str(tmp_path), runs["a"])
    assert code == 2 and "no checkpoints" in text


def test_compare_part_reports_mismatches_and_nans():
    a = {"params": {"w": np.array([1.0, np.nan]), "v": np.zeros(2)}, "opt": np.ones(3)}
    b = {"params": {"w": np.array([1.5, np.nan]), "v": np.zeros(3)}, "opt": np.ones(3)}
    part = compare_runs.compare_part(a, b)
    assert part["max_abs_diff"] == 0.5 and part["params_max_abs_diff"] == 0.5
    assert part["mismatched"] == ["params/v"] and not part["identical"]
    same = compare_runs.compare_part(a, a)
    assert same["identical"] and same["max_abs_diff"] == 0.0  # NaN in both places is equal.
    assert compare_runs.compare_part({"x": np.array([1.0])}, {"x": np.array([np.nan])})[
        "max_abs_diff"
    ] == float("inf")
