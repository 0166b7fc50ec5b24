"""Subprocess for test_multihost: one process of a multi-process CPU training run.

`python multihost_driver.py <workdir> <data_dir> <num_processes> <process_id> <port>
<devices_per_process>` trains the tiny program-test config; with num_processes > 1 it joins a
localhost cluster first (CPU collectives over gloo).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax


def main():
    workdir, data_dir, num_processes, process_id, port, devices = sys.argv[1:7]
    jax.config.update("jax_num_cpu_devices", int(devices))
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if int(num_processes) > 1:
        from fergan.launch.distributed import initialize_distributed

        initialize_distributed(f"localhost:{port}", int(num_processes), int(process_id))
    from fergan.experiments.train import train_and_evaluate
    from tests.program.helpers import tiny_config

    config = tiny_config(data_dir=data_dir)
    train_and_evaluate(config, workdir)
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
