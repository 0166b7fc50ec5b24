"""Launching runs: sweeps of config overrides, a local runner, multi-process set-up.

`sweep` reads sweep files; `local` runs a sweep on this machine; `sweep_entry` prints one entry's
command for cluster scripts (fergan/launch/slurm.sh); `distributed` starts jax.distributed for
multi-process runs (SLURM, TPU pods).
"""
