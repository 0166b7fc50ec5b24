"""Determinism flags and the environment record."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from fergan import determinism
from fergan.tools import compare_runs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# In a fresh process: configure twice before JAX starts, then start JAX with the flags (XLA
# refuses unknown flags, so this also checks the names) and record the environment.
SCRIPT = """
import json, os
from fergan import determinism
first = determinism.configure(True)
second = determinism.configure(True)
import jax.numpy as jnp
float(jnp.ones(3).sum())
record = determinism.environment_record()
print(json.dumps({"first": first, "second": second, "env": os.environ["XLA_FLAGS"],
                  "record": record}))
"""


OTHER_FLAG = "--xla_force_host_platform_device_count=1"


def test_configure_sets_the_flags_once_before_jax_starts():
    env = dict(os.environ, XLA_FLAGS=f"--xla_gpu_deterministic_ops=false {OTHER_FLAG}")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout.strip().splitlines()[-1])
    flags = report["env"].split()
    assert report["first"] == report["second"] == report["env"]
    assert flags == [OTHER_FLAG, *determinism.DETERMINISTIC_XLA_FLAGS]
    assert report["record"]["deterministic"] is True
    assert report["record"]["xla_flags"] == report["env"]


def test_configure_false_leaves_xla_flags_alone(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", OTHER_FLAG)
    assert determinism.configure(False) == OTHER_FLAG
    assert os.environ["XLA_FLAGS"] == OTHER_FLAG


def test_configure_refuses_once_the_backend_runs(monkeypatch):
    jax.devices()  # Make sure this process's backend is up.
    monkeypatch.setenv("XLA_FLAGS", "")
    with pytest.raises(RuntimeError, match="before the first JAX computation"):
        determinism.configure(True)
    assert os.environ["XLA_FLAGS"] == ""
    # Already set: nothing to change, so nothing to refuse.
    monkeypatch.setenv("XLA_FLAGS", " ".join(determinism.DETERMINISTIC_XLA_FLAGS))
    assert determinism.configure(True) == os.environ["XLA_FLAGS"]


def test_cpu_isa_names_the_cap_and_rejects_unknown_isas(monkeypatch):
    assert determinism.cpu_isa_flags("") == ()
    assert determinism.cpu_isa_flags("avx2") == (
        "--xla_cpu_max_isa=AVX2", determinism.CONSISTENT_MATH_FLAG
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"determinism\.cpu_isa='avx3' is unknown"):
        determinism.cpu_isa_flags("avx3")
    # In force only when XLA_FLAGS carries the cap (the backend has started: no change now).
    switch = " ".join(determinism.cpu_isa_flags("AVX2"))
    monkeypatch.setenv("XLA_FLAGS", f"{OTHER_FLAG} {switch}")
    determinism.check_cpu_isa("AVX2")
    assert determinism.configure(False, "AVX2") == os.environ["XLA_FLAGS"]
    with pytest.raises(ValueError, match=r"determinism\.cpu_isa='AVX512' is not in force"):
        determinism.check_cpu_isa("AVX512")
    with pytest.raises(RuntimeError, match="--xla_cpu_max_isa=AVX512"):
        determinism.configure(False, "AVX512")
    assert determinism.settings_in_force(os.environ["XLA_FLAGS"]) == {
        "deterministic": False, "cpu_isa": "AVX2", "cpu_platform_dependent_math": False
    }  # fmt: skip
    # The cap alone is not the switch.
    with pytest.raises(ValueError, match="enable_platform_dependent_math=false"):
        determinism.check_cpu_isa("AVX2", "--xla_cpu_max_isa=AVX2")


def test_cpu_record_reads_x86_and_arm_cpuinfo():
    x86 = "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu ht sse4_2 avx2 fma avx512f\n"
    record = determinism.cpu_record(x86 + x86.replace("Some Xeon", "Other"))
    assert record["model"] == "Some Xeon"  # The first processor's lines.
    assert record["isa_flags"] == ["avx2", "avx512f", "fma", "sse4_2"]
    assert determinism.cpu_record("processor : 0\nFeatures : fp asimd sve\n")["isa_flags"] == [
        "asimd", "fp", "sve"
    ]  # fmt: skip
    assert determinism.cpu_record("")["isa_flags"] is None


def test_environment_record_has_every_key():
    record = determinism.environment_record()
    assert set(record) >= {
        "versions", "xla_version", "platform_version", "python", "backend", "device_kinds",
        "device_count", "local_device_count", "process_count", "process_index", "xla_flags",
        "deterministic", "cpu_isa", "cpu_platform_dependent_math", "cpu",
    }  # fmt: skip
    assert set(record["versions"]) >= {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint"}
    assert record["versions"]["jax"] == jax.__version__
    assert record["backend"] == "cpu" and record["device_kinds"] == ["cpu"]
    assert record["device_count"] == 4 and record["process_count"] == 1  # tests/conftest.py
    assert record["python"] == sys.version.split()[0]
    assert set(record["cpu"]) == {"machine", "model", "isa_flags"}
    json.dumps(record)  # Serializable as it is, e.g. into summary.json.


def train_in_subprocess(out_path, machine_flags: str, cpu_isa: str) -> subprocess.Popen:
    """Start tests/launch/isa_driver.py on a simulated machine (`machine_flags`: its own ISA
    cap in XLA_FLAGS, '' = this host) with the config switch `cpu_isa`."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.launch.isa_driver", str(out_path), cpu_isa],
        cwd=ROOT, env=dict(os.environ, XLA_FLAGS=machine_flags, JAX_PLATFORMS="cpu"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finished(process) -> dict:
    """The settings in force that a driver process printed, once it exited cleanly."""
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def compared(path_a, path_b) -> dict:
    """compare_runs' report on the parameters two driver processes saved."""
    with np.load(path_a) as a, np.load(path_b) as b:
        return compare_runs.compare_part(dict(a), dict(b), params_prefix="")


def test_cpu_isa_switch_gives_the_same_bits_under_two_isa_caps(tmp_path):
    # Two machines on one host: this CPU as it is (AVX-512 here), and a CPU capped at AVX2;
    # each without and with the switch. XLA reads its flags once per process: one run each.
    avx2_machine = "--xla_cpu_max_isa=AVX2"
    runs = {
        "host": ("", ""),
        "avx2_machine": (avx2_machine, ""),
        "host_with_switch": ("", determinism.PORTABLE_CPU_ISA),
        "avx2_machine_with_switch": (avx2_machine, determinism.PORTABLE_CPU_ISA),
    }
    started = {
        name: train_in_subprocess(tmp_path / f"{name}.npz", flags, isa)
        for name, (flags, isa) in runs.items()
    }
    settings = {name: finished(process) for name, process in started.items()}
    assert settings["host"]["cpu_isa"] is None and settings["host"]["cpu_platform_dependent_math"]
    for name in ("host_with_switch", "avx2_machine_with_switch"):
        assert settings[name]["cpu_isa"] == "AVX2", name
        assert not settings[name]["cpu_platform_dependent_math"], name
    # With the switch both machines compute the same bits ...
    same = compared(tmp_path / "host_with_switch.npz", tmp_path / "avx2_machine_with_switch.npz")
    assert same["identical"] and same["max_ulp"] == 0 and same["leaves"] == 11
    # ... without it, each compiles for its own ISA: the parameters differ by rounding (far less
    # than one learning-rate step, 1e-3). An AVX2-only host has nothing to differ from.
    if "avx512f" in (determinism.cpu_record()["isa_flags"] or []):
        differ = compared(tmp_path / "host.npz", tmp_path / "avx2_machine.npz")
        assert not differ["identical"] and differ["max_ulp"] > 0
        assert differ["max_abs_diff"] < 1e-6, differ
