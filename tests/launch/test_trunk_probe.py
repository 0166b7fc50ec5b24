"""trunk_probe: the evaluation's linear probe on pixels and on LightCNN trunks, and its CLI."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fergan.evaluation.edit_metrics import linear_probe_accuracy
from fergan.identity.features import trunk_outputs
from fergan.models import LightCNN29
from fergan.tools import cli, trunk_probe

# --config.<key> overrides are registered from sys.argv when the flags are defined, so a test
# that calls the tool in-process names a config file of its own.
TINY_CONFIG = """
from configs import demo_paper


def get_config():
    config = demo_paper.get_config()
    config.data.num_subjects = 4
    config.data.num_folds = 2
    config.model.width = 0.125
    return config
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY_CONFIG)
    return str(path)


def _squares(n: int, seed: int) -> dict:
    """Faces in [-1, 1] whose class (0..3) is a bright 4x4 square in one corner, over noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    x = rng.uniform(-1, 0, (n, 32, 32, 1)).astype(np.float32)
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[i, 4 + 20 * r : 8 + 20 * r, 4 + 20 * c : 8 + 20 * c] = 1.0
    return {"x": x, "y": y}


def test_rows_are_the_probe_on_pixels_then_on_each_trunk():
    model = LightCNN29(0.25, 5)
    train, test = _squares(48, 0), _squares(16, 1)
    params = trunk_probe.untrained_trunk(model, 0, 32)
    rows = trunk_probe.probe_table(train, test, {"t0": params}, model)

    assert [r["features"] for r in rows] == ["pixels", "t0"]
    assert [r["dims"] for r in rows] == [32 * 32, 4 * 4 * 48]
    assert rows[0]["accuracy"] == 1.0  # The class is in the pixels.
    want = linear_probe_accuracy(
        trunk_outputs(model, params, train["x"]),
        train["y"],
        trunk_outputs(model, params, test["x"]),
        test["y"],
    )
    assert rows[1]["accuracy"] == want


def test_untrained_trunk_is_drawn_from_the_seed():
    model = LightCNN29(0.25, 5)
    a, b, c = (trunk_probe.untrained_trunk(model, s, 32) for s in (0, 0, 1))
    assert "fc" not in a and "conv1" in a  # conv1..pool3 only.
    leaves = lambda t: jax.tree.leaves(t)
    assert all(bool(jnp.array_equal(p, q)) for p, q in zip(leaves(a), leaves(b), strict=True))
    assert not all(bool(jnp.array_equal(p, q)) for p, q in zip(leaves(a), leaves(c), strict=True))


def test_cli_prints_the_table_and_json(tmp_path, capsys, config_file):
    argv = [f"--config={config_file}", f"--workdir={tmp_path}", "--seeds=0,1"]
    assert cli.call(trunk_probe.main, trunk_probe.define_flags, argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = json.loads(lines[-1])
    assert [r["features"] for r in rows] == [
        "pixels",
        "trunk, untrained (seed 0)",
        "trunk, untrained (seed 1)",
    ]
    assert "| pixels | 1024 |" in "\n".join(lines)
    assert os.path.isdir(tmp_path / "tfds")  # data.data_dir '' -> <workdir>/tfds, built.


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--weights=/no/such/folder"], "error: --weights: /no/such/folder is not a folder"),
        (["--seeds=a"], "error: --seeds=a must be integers"),
        (["--runs=/no/run"], "error: --runs: /no/run is not a folder"),
    ],
    ids=["weights", "seeds", "runs"],
)
def test_bad_flags_are_one_line_and_write_nothing(tmp_path, capsys, config_file, extra, message):
    argv = [f"--config={config_file}", f"--workdir={tmp_path / 'w'}", *extra]
    assert cli.call(trunk_probe.main, trunk_probe.define_flags, argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == message
    assert not os.path.exists(tmp_path / "w")


def test_trained_trunks_are_parameter_subtrees_with_the_trunk_layers():
    layers = {"conv1": 1, "group1": 2}
    state = {
        "r": {
            "params": {"trunk": dict(layers), "head": {"cls": 3}},
            "opt_state": {"0": {"mu": {"trunk": dict(layers)}}},  # Same layout, not parameters.
        },
        "identity": {**layers, "fc": 4},  # Further layers: not a trunk alone.
        "step": 5,
    }
    found = trunk_probe.trained_trunks(state, set(layers))
    assert list(found) == ["r/params/trunk"] and found["r/params/trunk"] == layers


def test_a_run_of_another_split_is_refused_before_anything_is_written(
    tmp_path, capsys, config_file
):
    run = tmp_path / "run"
    run.mkdir()
    other = {"name": "synthetic_faces", "num_subjects": 4, "num_folds": 2, "fold": 1}
    (run / "config.json").write_text(json.dumps({"seed": 0, "data": other}))
    argv = [f"--config={config_file}", f"--workdir={tmp_path / 'w'}", f"--runs={run}"]
    assert cli.call(trunk_probe.main, trunk_probe.define_flags, argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"error: --runs: {run} has fold 1, the config 0"
    assert not os.path.exists(tmp_path / "w")
