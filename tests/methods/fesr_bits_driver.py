"""Subprocess for test_fesr_bits: 50 demo steps of FESR_JL (25 in each stage) under the AVX2 cap
of `determinism.cpu_isa`, so the bits do not depend on the host's vector units; prints one JSON
line with a digest of every array of the saved state (parameters, optimizer states, step, key).

The digest is a hash of the sorted per-array hashes: it pins every bit of every array while
staying independent of the names and nesting of the state's fields.
"""

import hashlib
import json
import os
import sys

from fergan import determinism

STEPS = 50


def demo_config(workdir: str):
    from configs import demo_paper as demo

    config = demo.get_config()
    config.data.data_dir = os.path.join(workdir, "tfds")
    # No identity pretraining: the frozen LightCNN starts from the seed, which keeps the run short.
    config.identity.pretrain = False
    # 42 steps per epoch at the demo's size: stage 2 starts at step 25.
    config.train.pre_epochs = 25 / 42
    config.train.eval_every = 0
    config.train.checkpoint_every = STEPS
    config.determinism.cpu_isa = "AVX2"
    return config


def state_digest(folder: str) -> str:
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    tree = ocp.StandardCheckpointer().restore(os.path.abspath(folder))
    hashes = sorted(
        hashlib.sha256(
            f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()
        ).hexdigest()
        for a in map(np.asarray, jax.tree.leaves(tree))
    )
    return hashlib.sha256("".join(hashes).encode()).hexdigest()


def main(workdir: str) -> None:
    determinism.configure(False, "AVX2")
    config = demo_config(workdir)
    try:
        from fergan.experiments.train import train_and_evaluate
    except ImportError:  # The layout before the method interface.
        from fergan.experiments.train import train_and_evaluate
    train_and_evaluate(config, os.path.join(workdir, "run"), stop_after=STEPS)
    folder = os.path.join(workdir, "run", "checkpoints", str(STEPS), "state")
    print(json.dumps({"digest": state_digest(folder)}), flush=True)


if __name__ == "__main__":  # python -m tests.methods.fesr_bits_driver WORKDIR
    main(sys.argv[1])
