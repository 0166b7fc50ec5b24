"""jax.distributed set-up: cluster detection, and real 2-process starts on CPU."""

import json
import os
import socket
import subprocess
import sys

import pytest
from absl import flags

from fergan.launch import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER = os.path.join(ROOT, "tests", "launch", "distributed_driver.py")
SLURM = {
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_NODELIST": "localhost",
    "SLURM_NTASKS": "2",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
}


def test_detect_cluster():
    assert distributed.detect_cluster({}) is None
    assert distributed.detect_cluster(SLURM) == "slurm"
    assert distributed.detect_cluster({**SLURM, "SLURM_NTASKS": "1"}) is None
    outside_srun = {k: v for k, v in SLURM.items() if k != "SLURM_PROCID"}
    assert distributed.detect_cluster(outside_srun) is None
    mpi = {"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "4"}
    assert distributed.detect_cluster(mpi) == "open_mpi"
    assert distributed.detect_cluster({"TPU_WORKER_HOSTNAMES": "h0,h1"}) == "tpu"
    assert distributed.detect_cluster({"TPU_WORKER_HOSTNAMES": "h0"}) is None
    assert distributed.detect_cluster({"FERGAN_DISTRIBUTED": "1"}) == "forced"
    assert distributed.detect_cluster({**SLURM, "FERGAN_DISTRIBUTED": "0"}) is None
    with pytest.raises(ValueError, match="FERGAN_DISTRIBUTED"):
        distributed.detect_cluster({"FERGAN_DISTRIBUTED": "maybe"})


def test_single_process_is_a_no_op(monkeypatch):
    for name in (*SLURM, "FERGAN_DISTRIBUTED", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.initialize_distributed() is None
    assert distributed.initialize_distributed(num_processes=1) is None
    with pytest.raises(ValueError, match="process_id=2 must be in"):
        distributed.initialize_distributed("localhost:1", 2, 2)


def test_define_flags_is_idempotent():
    values = flags.FlagValues()
    distributed.define_flags(values)
    distributed.define_flags(values)
    values(["prog", "--coordinator_address=h:1", "--num_processes=2", "--process_id=1"])
    assert (values.coordinator_address, values.num_processes, values.process_id) == ("h:1", 2, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_pair(args_for, env_for) -> list[dict]:
    """Start the driver as processes 0 and 1 and return their reports."""
    procs = [
        subprocess.Popen(
            [sys.executable, DRIVER, *args_for(i)],
            cwd=ROOT,
            env=env_for(i),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    reports = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            proc.kill()
    return reports


def clean_env() -> dict:
    drop = (*SLURM, "FERGAN_DISTRIBUTED", "TPU_WORKER_HOSTNAMES", "JAX_COORDINATOR_PORT")
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_two_processes_from_flags():
    address = f"--coordinator_address=localhost:{free_port()}"
    reports = run_pair(
        lambda i: [address, "--num_processes=2", f"--process_id={i}"], lambda i: clean_env()
    )
    assert [(r["source"], r["process_index"], r["process_count"]) for r in reports] == [
        ("flags", 0, 2), ("flags", 1, 2),
    ]  # fmt: skip
    assert all(r["device_count"] == 2 for r in reports)  # One CPU device per process.


def test_two_processes_from_a_slurm_environment():
    port = str(free_port())

    def env(i):
        task = {**SLURM, "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)}
        return {**clean_env(), **task, "JAX_COORDINATOR_PORT": port}

    reports = run_pair(lambda i: [], env)
    assert [(r["source"], r["process_index"], r["process_count"]) for r in reports] == [
        ("slurm", 0, 2), ("slurm", 1, 2),
    ]  # fmt: skip


def test_a_plain_process_stays_single():
    out = subprocess.run(
        [sys.executable, DRIVER], cwd=ROOT, env=clean_env(), capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {
        "source": None, "initialized": False, "process_index": 0, "process_count": 1,
        "device_count": 1,
    }  # fmt: skip
