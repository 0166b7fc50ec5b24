"""Determinism flags and the environment record."""

import json
import os
import subprocess
import sys

import jax
import pytest

from fergan import determinism

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


def test_environment_record_has_every_key():
    record = determinism.environment_record()
    assert set(record) >= {
        "versions", "xla_version", "platform_version", "python", "backend", "device_kinds",
        "device_count", "local_device_count", "process_count", "process_index", "xla_flags",
        "deterministic",
    }  # fmt: skip
    assert set(record["versions"]) >= {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint"}
    assert record["versions"]["jax"] == jax.__version__
    assert record["backend"] == "cpu" and record["device_kinds"] == ["cpu"]
    assert record["device_count"] == 4 and record["process_count"] == 1  # tests/conftest.py
    assert record["python"] == sys.version.split()[0]
    json.dumps(record)  # Serializable as it is, e.g. into summary.json.
