"""Sweep files: loading and checking, run names, the commands they become."""

import os
import shlex

import pytest
from absl import flags
from ml_collections import config_flags

from fergan.launch import sweep, sweep_entry
from fergan.tools import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEPS = os.path.join(ROOT, "sweeps")
DEMO = os.path.join(ROOT, "configs", "demo.py")


@pytest.fixture(scope="module")
def demo():
    return sweep.load_config(DEMO)


def write(tmp_path, body: str, name: str = "s.py") -> str:
    path = tmp_path / name
    path.write_text(body)
    return str(path)


def test_example_sweeps_load_against_the_demo_config(demo):
    grid = sweep.load_sweep(os.path.join(SWEEPS, "variants_x_folds.py"), demo)
    assert len(grid) == 20
    assert {e["variant"] for e in grid} == {"BASELINE", "FESR_JL-IL", "FESR_JL-RDBP", "FESR_JL"}
    assert sorted({e["data.fold"] for e in grid}) == [0, 1, 2, 3, 4]
    assert sweep.load_sweep(os.path.join(SWEEPS, "seeds.py"), demo) == [
        {"seed": s} for s in range(4)
    ]
    assert len(sweep.load_sweep(os.path.join(SWEEPS, "smoke.py"), DEMO)) == 2  # A spec works too.


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("X = 1\n", r"defines no get_sweep\(\)"),
        ("def get_sweep():\n    return ({'seed': 1},)\n", r"returned a tuple, not a list"),
        ("def get_sweep():\n    return []\n", r"empty list"),
        ("def get_sweep():\n    return [{'seed': 1}, 3]\n", r"entry 1 is a int, not a dict"),
        ("def get_sweep():\n    return [{'sed': 1}]\n", r"'sed' is not a config key"),
        ("def get_sweep():\n    return [{'data.folds': 1}]\n", r"data has no key 'folds'"),
        ("def get_sweep():\n    return [{'model': 1}]\n", r"group of keys, not a value"),
        ("def get_sweep():\n    return [{'seed': 'one'}]\n", r"seed='one' is a str .* is a int"),
        ("def get_sweep():\n    return [{'seed': True}]\n", r"seed=True is a bool"),
        ("def get_sweep():\n    return [{'identity.pretrain': 1}]\n", r"is a int .* is a bool"),
        ("def get_sweep():\n    return [{'seed': [1, 2]}]\n", r"must be bool, int, float or str"),
        ("def get_sweep():\n    return [{'seed': 1}, {'seed': 1}]\n", r"same run folder"),
    ],
)
def test_bad_sweeps_are_refused_with_the_file_named(tmp_path, demo, body, message):
    path = write(tmp_path, body)
    with pytest.raises(sweep.SweepError, match=message) as error:
        sweep.load_sweep(path, demo)
    assert path in str(error.value)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(sweep.SweepError, match=r"Sweep file .*nope\.py' does not exist"):
        sweep.load_sweep(str(tmp_path / "nope.py"))
    with pytest.raises(sweep.SweepError, match=r"Config file .*nope\.py' does not exist"):
        sweep.load_config(str(tmp_path / "nope.py"))


def test_without_a_config_only_types_are_checked(tmp_path):
    ok = write(tmp_path, "def get_sweep():\n    return [{'anything.goes': 0.5}]\n")
    assert sweep.load_sweep(ok) == [{"anything.goes": 0.5}]
    bad = write(tmp_path, "def get_sweep():\n    return [{'x': None}]\n", "bad.py")
    with pytest.raises(sweep.SweepError, match="NoneType"):
        sweep.load_sweep(bad)


def test_ints_may_fill_float_fields(demo):
    sweep.validate_overrides({"model.width": 1, "optim.learning_rate": 0.001}, demo)


def test_run_names_are_stable_and_safe():
    assert sweep.run_name({"variant": "FESR_JL", "seed": 1}) == "variant=FESR_JL,seed=1"
    assert sweep.run_name({"seed": 1, "variant": "FESR_JL"}) == "seed=1,variant=FESR_JL"
    assert sweep.run_name({"data.fold": 3, "model.width": 0.125}) == "data.fold=3,model.width=0.125"
    assert sweep.run_name({"flag": True}) == "flag=true"
    assert sweep.run_name({}) == "base"
    assert sweep.run_name({"data.manual_dir": "/a b/c:d"}) == "data.manual_dir=_a_b_c_d"
    long_a = sweep.run_name({"name": "x" * 300 + "a"})
    long_b = sweep.run_name({"name": "x" * 300 + "b"})
    assert len(long_a) == sweep.MAX_NAME_LENGTH and long_a != long_b


def test_command_for_round_trips_through_config_flags(demo):
    overrides = {
        "variant": "FESR_JL-RDBP",
        "seed": 7,
        "data.fold": 3,
        "optim.learning_rate": 1.2345678901234e-05,
        "model.width": 1,
        "identity.pretrain": False,
        "data.class_names": "a b,c",
    }
    argv = sweep.command_for("configs/demo.py", "/runs", overrides, python="py")
    name = sweep.run_name(overrides)
    head = ["py", "-m", "fergan.main", "--config", "configs/demo.py", "--workdir", f"/runs/{name}"]
    assert argv[:7] == head
    assert argv[7:] == sweep.override_flags(overrides)
    # Parse the flags the way fergan.main does (config_flags reads overrides from sys_argv).
    command_line = ["main", "--config", DEMO, *argv[5:]]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=command_line)
    flags.DEFINE_string("workdir", None, "", flag_values=values)
    values(command_line)
    for key, value in overrides.items():
        parsed, expected_type = values.config, demo
        for part in key.split("."):
            parsed, expected_type = parsed[part], expected_type[part]
        assert parsed == value, key
        assert type(parsed) is type(expected_type), key
    assert values.workdir == f"/runs/{name}"


def test_pass_through_flags_may_not_override_the_sweep():
    entries = [{"seed": 0}, {"data.fold": 1}]
    sweep.check_extra_flags(["--config.train.max_epochs=2", "--mode=train"], entries)
    for bad in ("--config.seed=3", "--config.data.fold=0", "--workdir=/x", "--config=c.py"):
        with pytest.raises(sweep.SweepError, match="Pass-through flag"):
            sweep.check_extra_flags([bad], entries)
    assert sweep.split_passthrough(["--a", "--", "--b", "--"]) == (["--a"], ["--b", "--"])


def sweep_entry_main(argv: list[str]) -> int:
    """`python -m fergan.launch.sweep_entry <argv>`, in this process: its exit status."""
    return cli.call(sweep_entry.main, sweep_entry.define_flags, argv, sweep.parse_launcher_flags)


def test_sweep_entry_prints_counts_commands_and_folders(capsys):
    base = ["--config", DEMO, "--sweep", os.path.join(SWEEPS, "smoke.py"), "--workdir", "/r x"]
    assert sweep_entry_main([*base, "--count"]) == 0
    assert capsys.readouterr().out == "2\n"
    assert sweep_entry_main([*base, "--index", "1", "--", "--config.train.max_epochs=2"]) == 0
    argv = shlex.split(capsys.readouterr().out)
    assert argv == [
        "python", "-m", "fergan.main", "--config", DEMO,
        "--workdir", "/r x/variant=BASELINE,seed=1", "--config.train.max_epochs=2",
        "--config.variant=BASELINE", "--config.seed=1",
    ]  # fmt: skip
    assert sweep_entry_main([*base, "--print", "workdir"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "/r x/variant=BASELINE,seed=0",
        "/r x/variant=BASELINE,seed=1",
    ]
    assert sweep_entry_main([*base, "--index", "2"]) == 1
    assert "--index 2 is out of range" in capsys.readouterr().err


def test_sweep_entry_refuses_a_bad_command_line_in_one_line(capsys):
    base = ["--config", DEMO, "--sweep", os.path.join(SWEEPS, "smoke.py"), "--workdir", "/r"]
    for argv, message in (
        ([*base, "--index=first"], "error: flag --index=first: "),
        ([*base, "--nope"], "error: Unknown command line flag 'nope'"),
        ([*base, "stray", "--", "--config.seed=1"], "error: unexpected arguments stray "),
        (base[2:], "error: flag --config=None: "),
    ):
        assert sweep_entry_main(argv) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err
