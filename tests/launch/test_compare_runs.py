"""compare_runs on real tiny runs: same seed is bit-identical, another seed is not."""

import json

import numpy as np
import pytest

from fergan.experiments import train
from fergan.tools import cli, compare_runs
from tests.program.helpers import tiny_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny BASELINE runs (the cheapest to compile) on the same data: seed 0 twice, seed 1 once,
    and 'd': seed 0 stopped at step 4, then resumed with another learning rate; 5 steps,
    checkpoints at steps 4 and 5, scalars logged at steps 2, 4 and 5."""
    root = tmp_path_factory.mktemp("compare")
    data_dir = str(root / "tfds")
    folders = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1), ("d", 0)):
        config = tiny_config("BASELINE", data_dir=data_dir)
        config.seed = seed
        config.data.synthetic_seed = 0  # One dataset for all four.
        folders[name] = str(root / name)
        if name == "d":
            train.train_and_evaluate(config, folders[name], stop_after=4)
            config.optim.learning_rate *= 2
        train.train_and_evaluate(config, folders[name])
    return folders


def report_of(capsys, *argv) -> tuple[int, str, dict | None]:
    code = cli.call(compare_runs.main, compare_runs.define_flags, argv)
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    return code, out.out + out.err, json.loads(lines[-1]) if code == 0 else None


def test_same_seed_is_bit_identical(runs, capsys):
    code, text, report = report_of(capsys, runs["a"], runs["b"])
    assert code == 0
    assert report["identical"] and report["data_state_identical"]
    assert report["step_a"] == report["step_b"] == 5
    assert set(report["networks"]) == {"g", "dimg", "dz", "r", "identity", "step", "rng"}
    for name, part in report["networks"].items():
        assert part["identical"] and part["max_abs_diff"] == 0.0 and not part["mismatched"], name
        assert part["max_ulp"] == 0, name
    assert report["divergence"] is None
    for section in ("eval", "train_last_step"):
        assert report["metrics"][section]
        # Equal numbers, or None in both (metrics this run does not compute).
        assert all(m["a"] == m["b"] for m in report["metrics"][section].values())
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
    # Another seed: apart from the first checkpoint and the first logged step on.
    divergence = report["divergence"]
    assert divergence["checkpoints"]["step"] == 4 and divergence["checkpoints"]["last_same"] is None
    assert divergence["scalars"]["step"] == 2 and divergence["scalars"]["last_same"] is None


def test_a_run_that_parts_midway_names_the_step_and_the_network(runs, capsys):
    code, text, report = report_of(capsys, runs["a"], runs["d"])
    assert code == 0 and not report["identical"]
    by_checkpoint = report["divergence"]["checkpoints"]
    assert by_checkpoint["step"] == 5 and by_checkpoint["last_same"] == 4
    # BASELINE trains R alone: the learning rate reaches nothing else.
    assert by_checkpoint["networks"] == ["r"] and by_checkpoint["max_ulp"] > 0
    by_scalars = report["divergence"]["scalars"]
    assert by_scalars["step"] == 5 and by_scalars["last_same"] == 4
    # Step 5's losses come from the parameters of step 4, the same in both: only the rate shows.
    assert by_scalars["tags"] == ["train/lr"] and by_scalars["networks"] == []
    assert "First difference (checkpoints): step 5 (same at step 4), in r, up to" in text


def test_max_ulp_diff_counts_floats_between_values():
    one = np.float32([1.0, -1.0, 0.0])
    assert compare_runs.max_ulp_diff(one, one) == 0
    assert compare_runs.max_ulp_diff(one, np.nextafter(one, np.float32(2))) == 1
    tiny = np.float32([1e-45])  # The smallest subnormal: one float either side of zero.
    assert compare_runs.max_ulp_diff(tiny, -tiny) == 2
    assert compare_runs.max_ulp_diff(np.float32([0.0]), np.float32([-0.0])) == 0
    assert compare_runs.max_ulp_diff(np.float32([1.0]), np.float32([2.0])) == 2**23
    assert compare_runs.max_ulp_diff(np.float64([1.0]), np.float64([1.0 + 2**-51])) == 2
    assert compare_runs.max_ulp_diff(np.array([1, 2]), np.array([1, 3])) == 0  # Not floats.


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


def test_a_wrong_command_line_is_one_line_and_exit_2(capsys, tmp_path):
    code, text, _ = report_of(capsys, str(tmp_path))
    assert code == 2 and text == "error: expected two run folders, got 1; usage: " + (
        compare_runs.USAGE + "\n"
    )
    code, text, _ = report_of(capsys, str(tmp_path), str(tmp_path), "--step=two")
    assert code == 2 and text.startswith("error: ") and text.count("\n") == 1


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
