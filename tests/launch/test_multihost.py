"""Multi-host training: 2 processes x 2 CPU devices give the parameters of 1 process x 4 devices."""

import os
import socket
import subprocess
import sys
import tempfile

import jax
import numpy as np

from fergan.checkpointing import Checkpoints
from fergan.data import pipeline
from fergan.experiments.train import Setup, train_and_evaluate
from tests.program.helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER = os.path.join(ROOT, "tests", "launch", "multihost_driver.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(workdir, data_dir, processes, devices, port):
    cache = os.path.join(tempfile.gettempdir(), "fergan-jax-cache")
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache)
    return [
        subprocess.Popen(
            [
                sys.executable,
                DRIVER,
                workdir,
                data_dir,
                str(processes),
                str(i),
                str(port),
                str(devices),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(processes)
    ]


def final_state(workdir, data_dir):
    config = tiny_config(data_dir=data_dir)
    setup = Setup(config, workdir)
    state, _ = setup.checkpoints.restore(setup.initial_state)
    setup.checkpoints.close()
    return state


def test_two_processes_match_one_process(tmp_path):
    data_dir = str(tmp_path / "tfds")
    # Build the dataset once, so the processes do not race to prepare it.
    pipeline.build_datasets(tiny_config(data_dir=data_dir), data_dir)
    multi, single = str(tmp_path / "2x2"), str(tmp_path / "1x4")
    procs = launch(multi, data_dir, 2, 2, free_port())
    errors = [proc.communicate(timeout=900)[1].decode() for proc in procs]
    for i, (proc, err) in enumerate(zip(procs, errors, strict=True)):
        assert proc.returncode == 0, f"process {i}:\n{err[-3000:]}"
    # The reference in this process (its 4 devices): after the others, so the two runs never
    # share the cores, and with the program the other tiny runs of the suite compiled.
    train_and_evaluate(tiny_config(data_dir=data_dir), single)
    manager = Checkpoints(multi, keep=3)
    assert manager.latest_step() == 10
    manager.close()
    a, b = final_state(multi, data_dir), final_state(single, data_dir)
    assert int(a.step) == int(b.step) == 10
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        # The same samples with the same noise; only the order of the cross-process reductions
        # differs, which Adam can turn into a few 1e-6 on parameters after 10 steps (a wrong
        # batch or noise assignment gives differences of 1e-3).
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=2e-5)
