"""Run-to-run determinism and a record of the software and hardware a run used.

On CPU, fergan's training is bit-reproducible as it is (tests/program/test_train.py). On GPU,
XLA may pick kernels by timing them (autotuning) and may sum with atomics, so two runs with the
same seed can drift apart. `configure(True)` asks XLA for deterministic GPU code:

  --xla_gpu_deterministic_ops=true             run-to-run determinism on GPU (no autotuning by
                                                timing, deterministic scatter and reductions)
  --xla_gpu_exclude_nondeterministic_ops=true  compile no op without a deterministic version

XLA reads XLA_FLAGS once, when the backend starts, so `configure` must run before the first
JAX computation. Deterministic kernels can be slower. TPU and CPU ignore these flags.

`environment_record()` describes where a run ran (versions, backend, devices, XLA_FLAGS) so that
two runs can be compared knowingly.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

from absl import flags

DETERMINISTIC_XLA_FLAGS = (
    "--xla_gpu_deterministic_ops=true",
    "--xla_gpu_exclude_nondeterministic_ops=true",
)
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def backend_started() -> bool:
    """Whether JAX has started its backend in this process (XLA_FLAGS are then fixed)."""
    if "jax" not in sys.modules:
        return False
    # No public query exists; this is the check jax.distributed.initialize makes itself.
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def _with_flags(current: str, wanted: tuple[str, ...]) -> str:
    """`current` XLA_FLAGS with each wanted `--name=value` set (an earlier value of the same
    name is replaced, so applying it twice changes nothing)."""
    names = {flag.split("=", 1)[0] for flag in wanted}
    kept = [tok for tok in current.split() if tok.split("=", 1)[0] not in names]
    return " ".join([*kept, *wanted])


def configure(deterministic: bool) -> str:
    """With `deterministic`, add DETERMINISTIC_XLA_FLAGS to os.environ['XLA_FLAGS'] (idempotent;
    other flags are kept). Without it, leave XLA_FLAGS as the user set it. Returns XLA_FLAGS.

    Raises:
      RuntimeError: the JAX backend already started, so the flags could no longer apply.
    """
    current = os.environ.get("XLA_FLAGS", "")
    if not deterministic:
        return current
    updated = _with_flags(current, DETERMINISTIC_XLA_FLAGS)
    if updated == current:
        return current
    if backend_started():
        raise RuntimeError(
            "determinism.configure(True) must run before the first JAX computation: the "
            "backend has started and would ignore the deterministic XLA flags."
        )
    os.environ["XLA_FLAGS"] = updated
    return updated


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define --deterministic (once; repeat calls are no-ops) for `configure_from_flags`."""
    if "deterministic" in flag_values:
        return
    flags.DEFINE_bool(
        "deterministic",
        False,
        "Deterministic GPU kernels (XLA flags; slower): same seed, same bits, run after run.",
        flag_values=flag_values,
    )


def configure_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> str:
    """`configure` with the value of --deterministic."""
    return configure(flag_values.deterministic)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_record() -> dict:
    """Versions (jax, jaxlib, flax, optax, orbax, numpy, XLA where known, python), backend,
    device kinds and counts, process count and XLA_FLAGS. Starts the JAX backend."""
    import jax
    import jax.extend

    devices = jax.devices()
    backend = jax.extend.backend.get_backend()
    return {
        "versions": {name: _version(name) for name in _PACKAGES},
        "xla_version": jax.extend.backend.backend_xla_version(),  # None where not reported.
        "platform_version": backend.platform_version,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "backend": jax.default_backend(),
        "device_kinds": sorted({d.device_kind for d in devices}),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "process_index": jax.process_index(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "deterministic": all(
            flag in os.environ.get("XLA_FLAGS", "").split() for flag in DETERMINISTIC_XLA_FLAGS
        ),
    }
