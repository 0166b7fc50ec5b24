"""The local sweep runner: device slots, scheduling, logs, skipping, and a real 2-run sweep."""

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from fergan.launch import local
from tests.program.helpers import recomputed_accuracy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Shrinks configs/demo_paper.py to the tiny program-test size (tests/program/helpers.py).
TINY_FLAGS = [
    "--config.model.width=0.125",
    "--config.data.num_subjects=4",
    "--config.data.num_folds=2",
    "--config.train.batch_size=8",
    "--config.train.pre_epochs=1",
    "--config.train.max_epochs=2",
    "--config.train.eval_every=0",
    "--config.identity.pretrain=false",
    "--config.judge.kind=none",
]


def subprocess_env() -> dict:
    """Runs share a persistent compilation cache that keeps even small programs, so repeated
    test sessions skip most compiling."""
    return dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=os.path.join(tempfile.gettempdir(), "fergan-jax-cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )


def test_gpu_slots_split_the_devices():
    slots = local.device_slots("gpu", ["0", "1", "2", "3", "4"], 2, max_parallel=8)
    assert slots == [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert len(local.device_slots("gpu", ["0", "1", "2", "3"], 1, max_parallel=3)) == 3
    with pytest.raises(ValueError, match="only 1 gpu devices"):
        local.device_slots("gpu", ["0"], 2, max_parallel=1)


def test_unpinned_slots_on_cpu_or_without_devices_per_run():
    assert local.device_slots("cpu", [], 4, max_parallel=2) == [{}, {}]
    assert local.device_slots("gpu", ["0", "1"], 0, max_parallel=3) == [{}, {}, {}]
    with pytest.raises(ValueError, match="max_parallel"):
        local.device_slots("cpu", [], 0, max_parallel=0)


def test_tpu_slots_own_chips_and_ports():
    slots = local.device_slots("tpu", [str(i) for i in range(4)], 2, max_parallel=4)
    assert [s["TPU_VISIBLE_CHIPS"] for s in slots] == ["0,1", "2,3"]
    assert {s["TPU_CHIPS_PER_PROCESS_BOUNDS"] for s in slots} == {"1,2,1"}
    assert len({s["TPU_PROCESS_PORT"] for s in slots}) == 2
    with pytest.raises(ValueError, match="on TPU must be one of"):
        local.device_slots("tpu", [str(i) for i in range(8)], 3, max_parallel=1)


def test_visible_gpus_are_taken_from_the_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert local.detect_accelerators() == ("gpu", ["3", "5"])
    assert local.detect_accelerators("cpu") == ("cpu", [])


def fake_run(tmp_path, name: str, code: str) -> local.Run:
    return local.Run(name, [sys.executable, "-c", code], str(tmp_path / name))


def test_execute_limits_concurrency_logs_and_skips(tmp_path):
    stamp = "import os, sys, time; print('env', os.environ.get('MARK')); time.sleep(1); "
    runs = [fake_run(tmp_path, f"r{i}", stamp + f"sys.exit({i % 2})") for i in range(4)]
    os.makedirs(runs[3].workdir)
    open(os.path.join(runs[3].workdir, local.SUMMARY), "w").close()
    start = time.time()
    results = local.execute(runs, [{"MARK": "a"}, {"MARK": "b"}], poll_s=0.05)
    elapsed = time.time() - start
    assert [(r.name, r.status, r.returncode) for r in results] == [
        ("r0", "ok", 0), ("r1", "failed", 1), ("r2", "ok", 0), ("r3", "skipped", None),
    ]  # fmt: skip
    assert 2.0 <= elapsed < 5.0  # 3 one-second runs, two at a time.
    for run in runs[:3]:
        with open(os.path.join(run.workdir, local.LOG)) as f:
            log = f.read()
        assert log.startswith("# ") and "MARK=" in log
        assert "\nenv a\n" in log or "\nenv b\n" in log
    table = local.format_table(results)
    assert table.splitlines()[0].split() == ["run", "status", "exit", "wall"]
    assert table.splitlines()[4].split() == ["r3", "skipped", "-", "-"]


def test_dry_run_prints_commands_and_runs_nothing(tmp_path):
    out = subprocess.run(
        [
            sys.executable, "-m", "fergan.launch.local", "--config", "configs/demo_paper.py",
            "--sweep", "sweeps/smoke.py", "--workdir", str(tmp_path), "--dry_run",
            "--", "--config.train.max_epochs=2",
        ],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    commands = [line for line in out.stdout.splitlines() if "fergan.main" in line]
    assert len(commands) == 2
    assert commands[1].endswith(
        f"--workdir {tmp_path}/variant=BASELINE,seed=1 --config.train.max_epochs=2 "
        "--config.variant=BASELINE --config.seed=1"
    )
    assert os.listdir(tmp_path) == []


def test_a_bad_sweep_fails_before_running(tmp_path):
    out = subprocess.run(
        [
            sys.executable, "-m", "fergan.launch.local", "--config", "configs/demo_paper.py",
            "--sweep", "sweeps/seeds.py", "--workdir", str(tmp_path), "--", "--config.seed=1",
        ],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 1
    assert "sets seed, which the sweep also sets" in out.stderr


def test_two_tiny_runs_end_to_end_then_skip(tmp_path):
    command = [
        sys.executable, "-m", "fergan.launch.local", "--config", "configs/demo_paper.py",
        "--sweep", "sweeps/smoke.py", "--workdir", str(tmp_path), "--max_parallel", "2",
        "--", *TINY_FLAGS,
    ]  # fmt: skip
    out = subprocess.run(
        command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for seed in (0, 1):
        workdir = tmp_path / f"variant=BASELINE,seed={seed}"
        with open(workdir / "summary.json") as f:
            summary = json.load(f)
        assert summary["variant"] == "BASELINE"
        assert summary["eval"]["accuracy"] == recomputed_accuracy(str(workdir))
        with open(workdir / "config.json") as f:
            config = json.load(f)
        assert config["seed"] == seed and config["model"]["width"] == 0.125
        assert "fergan.main" in (workdir / "launch.log").read_text()
    table = out.stdout[out.stdout.index("run ") :].splitlines()
    assert [row.split()[:3] for row in table[1:]] == [
        ["variant=BASELINE,seed=0", "ok", "0"], ["variant=BASELINE,seed=1", "ok", "0"],
    ]  # fmt: skip
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0
    assert again.stdout.count("skipped") == 2
