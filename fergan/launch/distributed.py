"""Multi-process runs: start `jax.distributed` before JAX does anything else.

Every process of a multi-host run (several GPU nodes under SLURM, the workers of a TPU pod) must
call `jax.distributed.initialize` before its first JAX computation; afterwards `jax.devices()`
lists the devices of all processes and the training loop shards batches over them.

`initialize_distributed` takes explicit values (coordinator address, process count, this
process's id) or, when none are given, starts the distributed system only if the environment
shows a multi-process launch; `jax.distributed.initialize()` then finds the values itself:

  SLURM      SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS (> 1), SLURM_PROCID, SLURM_LOCALID
             (set by `srun`; each task drives the GPU numbered SLURM_LOCALID).
  Open MPI   OMPI_MCA_orte_hnp_uri with OMPI_COMM_WORLD_SIZE > 1 (`mpirun`).
  TPU pod    TPU_WORKER_HOSTNAMES naming several hosts, or MEGASCALE_COORDINATOR_ADDRESS (GKE,
             multislice); on Cloud TPU VMs started with `gcloud ... --worker=all` set
             FERGAN_DISTRIBUTED=1 (fergan/launch/tpu_pod.sh does) and JAX reads the rest from the
             VM metadata.

FERGAN_DISTRIBUTED=1 forces the call, FERGAN_DISTRIBUTED=0 prevents it. JAX_COORDINATOR_PORT
overrides the port JAX derives (SLURM: from the job id). A plain single-process run needs none
of this and is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from absl import flags, logging

FORCE_VARIABLE = "FERGAN_DISTRIBUTED"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_SLURM = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


def _as_int(value: str | None, default: int = 1) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def detect_cluster(environ: Mapping[str, str] | None = None) -> str | None:
    """The multi-process launcher `environ` (default os.environ) shows: 'forced', 'slurm',
    'open_mpi' or 'tpu'; None for a single process (or FERGAN_DISTRIBUTED=0)."""
    env = os.environ if environ is None else environ
    forced = env.get(FORCE_VARIABLE, "").strip().lower()
    if forced in _FALSE:
        return None
    if forced in _TRUE:
        return "forced"
    if forced:
        raise ValueError(f"{FORCE_VARIABLE}={env[FORCE_VARIABLE]!r}: use 1 (force) or 0 (never).")
    # A one-task SLURM job (or the batch step of an array task) is a single process.
    if all(name in env for name in _SLURM) and _as_int(env["SLURM_NTASKS"]) > 1:
        return "slurm"
    if "OMPI_MCA_orte_hnp_uri" in env and _as_int(env.get("OMPI_COMM_WORLD_SIZE")) > 1:
        return "open_mpi"
    hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    if len(hosts) > 1 or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "tpu"
    return None


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> str | None:
    """Start jax.distributed when this is one process of several; call before any JAX work.

    Explicit values are passed to `jax.distributed.initialize` (values left None are found
    from the cluster environment by JAX). With no values, it is called only when
    `detect_cluster()` names a launcher. Returns how it was started ('flags' or the launcher's
    name), or None when nothing was done (single process, or already initialized).

    Raises:
      RuntimeError: JAX computed something already (jax.distributed must come first).
      ValueError: explicit values that cannot describe a run.
    """
    import jax  # Here, not at import: defining flags must not pull in JAX.

    if jax.distributed.is_initialized():
        logging.info("jax.distributed is already initialized; leaving it as it is.")
        return None
    explicit = (coordinator, num_processes, process_id)
    if any(value is not None for value in explicit):
        if num_processes is not None and num_processes < 1:
            raise ValueError(f"--num_processes={num_processes} must be at least 1.")
        in_range = process_id is None or num_processes is None or 0 <= process_id < num_processes
        if not in_range:
            raise ValueError(
                f"--process_id={process_id} must be in [0, {num_processes}) "
                f"for --num_processes={num_processes}."
            )
        if num_processes == 1 and coordinator is None:
            logging.info("Single process (--num_processes=1): jax.distributed not started.")
            return None
        logging.info(
            "Starting jax.distributed: coordinator=%s num_processes=%s process_id=%s",
            coordinator, num_processes, process_id,
        )  # fmt: skip
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )
        return "flags"
    cluster = detect_cluster()
    if cluster is None:
        return None
    logging.info("Starting jax.distributed from the %s environment.", cluster)
    jax.distributed.initialize()
    return cluster


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define --coordinator_address, --num_processes, --process_id (once; repeat calls are
    no-ops) so an absl program can pass explicit values to `initialize_from_flags`."""
    if "coordinator_address" in flag_values:
        return
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "Multi-process runs: host:port of process 0 (default: from SLURM / TPU / MPI env).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "num_processes",
        None,
        "Multi-process runs: number of processes (default: from the cluster environment).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "process_id",
        None,
        "Multi-process runs: this process's index in [0, num_processes) (default: from env).",
        flag_values=flag_values,
    )


def initialize_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> str | None:
    """`initialize_distributed` with the values of the flags from `define_flags`."""
    return initialize_distributed(
        flag_values.coordinator_address, flag_values.num_processes, flag_values.process_id
    )
