"""Subprocess driver for the kill-during-checkpoint test.

`python checkpoint_driver.py <workdir> <data_dir> <stall_at_index|-1> <marker>` trains the tiny
config; when the data-iterator state being written equals `stall_at_index`, the JSON writer of
that checkpoint touches `marker` and stalls, so the test can SIGKILL the process mid-write.
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax
import orbax.checkpoint as ocp

jax.config.update("jax_num_cpu_devices", 4)  # As in the pytest process it is compared with.
jax.config.update("jax_compilation_cache_dir", os.environ.get("FERGAN_TEST_JAX_CACHE", ""))
from tests.program.helpers import tiny_config  # noqa: E402


def main():
    workdir, data_dir, stall_at, marker = sys.argv[1:5]
    stall_at = int(stall_at)
    original = ocp.JsonCheckpointHandler._save_fn

    async def stalling_save(self, item, directory):
        if item.get("next_index") == stall_at:
            open(marker, "w").close()
            await asyncio.sleep(600)  # Killed here, with the checkpoint half-written.
        return await original(self, item, directory)

    ocp.JsonCheckpointHandler._save_fn = stalling_save
    from fergan.experiments.train import train_and_evaluate

    train_and_evaluate(tiny_config(data_dir=data_dir), workdir)


if __name__ == "__main__":
    main()
