"""Run-to-run determinism and a record of the software and hardware a run used.

On CPU, fergan's training is bit-reproducible as it is (tests/program/test_train.py). On GPU,
XLA may pick kernels by timing them (autotuning) and may sum with atomics, so two runs with the
same seed can drift apart. `configure(True)` asks XLA for deterministic GPU code:

  --xla_gpu_deterministic_ops=true             run-to-run determinism on GPU (no autotuning by
                                                timing, deterministic scatter and reductions)
  --xla_gpu_exclude_nondeterministic_ops=true  compile no op without a deterministic version

XLA:CPU compiles for the instruction set of the host: on a CPU with AVX-512 it picks other
vector widths, summation orders and fused multiply-adds than on one with AVX2, so the same run
gives other bits (docs/reproducibility.md has the measurements). `configure(..., cpu_isa="AVX2")`
caps the code at that ISA (`--xla_cpu_max_isa`) and turns off XLA's platform-dependent math
(kernels, such as its convolution library's, that may pick another arithmetic on another CPU),
which makes CPU results the same on every x86 machine with AVX2. The config key
`determinism.cpu_isa` sets it for `fergan.main`.

XLA reads XLA_FLAGS once, when the backend starts, so `configure` must run before the first
JAX computation. Deterministic kernels can be slower. TPU and CPU ignore the GPU flags.

`environment_record()` describes where a run ran (versions, backend, devices, CPU model and ISA
extensions, XLA_FLAGS and the determinism settings they put in force) so that two runs can be
compared knowingly.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import sys

from absl import flags

DETERMINISTIC_XLA_FLAGS = (
    "--xla_gpu_deterministic_ops=true",
    "--xla_gpu_exclude_nondeterministic_ops=true",
)
# x86 values of --xla_cpu_max_isa, oldest first. AVX2 (Haswell, 2013, and every later x86-64
# server CPU) is the portable choice.
CPU_ISAS = ("SSE4_2", "AVX", "AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX", "AMX_FP16")
PORTABLE_CPU_ISA = "AVX2"
# XLA documents the flag as allowing "calculations producing platform-dependent results"; off,
# its convolution/dot library is asked for consistent arithmetic across CPUs. It changes bits
# even under an ISA cap, so the cap alone does not pin them.
CONSISTENT_MATH_FLAG = "--xla_cpu_enable_platform_dependent_math=false"
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
# /proc/cpuinfo flags that name SIMD and arithmetic extensions a compiler may use.
_ISA_FLAG = re.compile(r"^(sse|ssse3|avx|fma|f16c|amx|bmi|popcnt|abm|movbe|aes|pclmul|vpclmul|"
                       r"vaes|gfni|sha)")  # fmt: skip


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


def cpu_isa_flags(cpu_isa: str) -> tuple[str, ...]:
    """XLA flags that cap XLA:CPU's code at `cpu_isa` (one of CPU_ISAS, any case) and turn off
    its platform-dependent math; '' = none, compile for this host as it is.

    Raises:
      ValueError: an unknown ISA name.
    """
    if not cpu_isa:
        return ()
    isa = cpu_isa.upper()
    if isa not in CPU_ISAS:
        raise ValueError(
            f"determinism.cpu_isa={cpu_isa!r} is unknown; allowed: '' (this host), "
            f"{', '.join(CPU_ISAS)} ({PORTABLE_CPU_ISA} runs the same on any recent x86 CPU)."
        )
    return (f"--xla_cpu_max_isa={isa}", CONSISTENT_MATH_FLAG)


def configure(deterministic: bool, cpu_isa: str = "") -> str:
    """Add to os.environ['XLA_FLAGS'] DETERMINISTIC_XLA_FLAGS when `deterministic`, and the cap
    of `cpu_isa_flags(cpu_isa)` (idempotent; other flags are kept, a flag of the same name is
    replaced). With neither, leave XLA_FLAGS as the user set it. Returns XLA_FLAGS.

    Raises:
      ValueError: an unknown `cpu_isa`.
      RuntimeError: the JAX backend already started, so the flags could no longer apply.
    """
    wanted = (DETERMINISTIC_XLA_FLAGS if deterministic else ()) + cpu_isa_flags(cpu_isa)
    current = os.environ.get("XLA_FLAGS", "")
    updated = _with_flags(current, wanted)
    if updated == current:
        return current
    if backend_started():
        raise RuntimeError(
            "determinism.configure must run before the first JAX computation: the backend has "
            f"started and would ignore the XLA flags {' '.join(wanted)}."
        )
    os.environ["XLA_FLAGS"] = updated
    return updated


def check_cpu_isa(cpu_isa: str, xla_flags: str | None = None) -> None:
    """Raise ValueError unless `xla_flags` (default: os.environ's) carries the cap of `cpu_isa`.
    fergan.main puts it there; a program that trains without it calls `configure` before JAX
    starts."""
    xla_flags = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
    missing = [flag for flag in cpu_isa_flags(cpu_isa) if flag not in xla_flags.split()]
    if missing:
        raise ValueError(
            f"determinism.cpu_isa={cpu_isa!r} is not in force (XLA_FLAGS={xla_flags!r} lacks "
            f"{' '.join(missing)}); call fergan.determinism.configure before JAX starts."
        )


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


def configure_from_flags(flag_values: flags.FlagValues = flags.FLAGS, cpu_isa: str = "") -> str:
    """`configure` with the value of --deterministic and `cpu_isa` (the config's
    `determinism.cpu_isa`)."""
    return configure(flag_values.deterministic, cpu_isa)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _xla_flag(xla_flags: str, name: str) -> str | None:
    """The value of the last `--name=value` in `xla_flags`, or None."""
    values = [tok.split("=", 1)[1] for tok in xla_flags.split() if tok.startswith(f"--{name}=")]
    return values[-1] if values else None


def settings_in_force(xla_flags: str) -> dict:
    """The determinism settings that `xla_flags` puts in force: GPU determinism, the CPU ISA
    cap (None: XLA:CPU compiles for the host, so bits depend on its CPU), and whether XLA:CPU
    may use platform-dependent math."""
    return {
        "deterministic": all(flag in xla_flags.split() for flag in DETERMINISTIC_XLA_FLAGS),
        "cpu_isa": _xla_flag(xla_flags, "xla_cpu_max_isa"),
        "cpu_platform_dependent_math": _xla_flag(
            xla_flags, "xla_cpu_enable_platform_dependent_math"
        )
        not in ("false", "0"),
    }


def cpu_record(cpuinfo: str | None = None) -> dict:
    """The CPU model and its ISA extensions, from /proc/cpuinfo (text `cpuinfo` when given);
    where that does not exist, the model from `platform` and isa_flags None."""
    if cpuinfo is None and os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    fields = {}
    for line in (cpuinfo or "").splitlines():  # The first processor's lines stand for all.
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "flags" in fields:  # x86: keep the extensions among flags such as 'fpu' or 'ht'.
        isa_flags = sorted(f for f in fields["flags"].split() if _ISA_FLAG.match(f))
    elif "Features" in fields:  # Arm lists only extensions.
        isa_flags = sorted(fields["Features"].split())
    else:
        isa_flags = None
    return {
        "machine": platform.machine(),
        "model": fields.get("model name") or platform.processor() or None,
        "isa_flags": isa_flags,
    }


def environment_record() -> dict:
    """Versions (jax, jaxlib, flax, optax, orbax, numpy, XLA where known, python), backend,
    device kinds and counts, process count, CPU model and ISA extensions, XLA_FLAGS and the
    determinism settings in force. Starts the JAX backend."""
    import jax
    import jax.extend

    devices = jax.devices()
    backend = jax.extend.backend.get_backend()
    xla_flags = os.environ.get("XLA_FLAGS", "")
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
        "cpu": cpu_record(),
        "xla_flags": xla_flags,
        **settings_in_force(xla_flags),
    }
