r"""Run a sweep on this machine: one `python -m fergan.main` subprocess per entry.

  python -m fergan.launch.local --config configs/demo.py --sweep sweeps/smoke.py \
      --workdir runs/smoke --max_parallel 2 [--devices_per_run N] [--dry_run] [-- extra flags]

At most --max_parallel runs at once. With --devices_per_run N > 0 on a machine with GPUs or TPU
chips, each run gets N devices of its own (CUDA_VISIBLE_DEVICES, or the libtpu TPU_* variables);
on CPU nothing is pinned. Each run writes its output to <workdir>/<run name>/launch.log; a run
whose folder already holds summary.json is skipped. Flags after `--` go to every run. Ends with
a table of run / status / exit code / wall time; the exit code is 1 when any run failed.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

from absl import flags

from fergan.launch import sweep
from fergan.tools import cli

# Chip-grid shape of a process holding N chips of one TPU host (libtpu's
# TPU_CHIPS_PER_PROCESS_BOUNDS); other counts do not form a sub-grid a process can own.
TPU_BOUNDS = {1: "1,1,1", 2: "1,2,1", 4: "2,2,1", 8: "2,4,1"}
TPU_BASE_PORT = 8476  # libtpu's default port; slot i uses TPU_BASE_PORT + i.
SUMMARY = "summary.json"
LOG = "launch.log"


@dataclasses.dataclass
class Run:
    """One sweep entry to execute."""

    name: str
    argv: list[str]
    workdir: str


@dataclasses.dataclass
class Result:
    """How a run ended: status is ok, failed, skipped or interrupted."""

    name: str
    status: str
    returncode: int | None = None
    wall_s: float = 0.0


def detect_accelerators(platform: str = "auto") -> tuple[str, list[str]]:
    """(platform, device ids) found without starting JAX in this process (a launcher holding
    the accelerator would starve its runs): GPUs from CUDA_VISIBLE_DEVICES or nvidia-smi, TPU
    chips from /dev/accel* or /dev/vfio; ('cpu', []) when none."""
    if platform in ("auto", "gpu"):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            ids = [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
        elif shutil.which("nvidia-smi"):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                check=False,
            )
            ids = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        else:
            ids = []
        if ids or platform == "gpu":
            return "gpu", ids
    if platform in ("auto", "tpu"):
        chips = glob.glob("/dev/accel[0-9]*") or [
            p for p in glob.glob("/dev/vfio/*") if os.path.basename(p).isdigit()
        ]
        if chips or platform == "tpu":
            return "tpu", [str(i) for i in range(len(chips))]
    return "cpu", []


def device_slots(
    platform: str, devices: list[str], devices_per_run: int, max_parallel: int
) -> list[dict[str, str]]:
    """Environment additions of each concurrent slot; their count is the effective parallelism.

    Slot i owns devices [i*N, (i+1)*N) for N = devices_per_run. Unpinned (N = 0 or CPU): every
    slot adds nothing.
    """
    if max_parallel < 1:
        raise ValueError(f"--max_parallel={max_parallel} must be at least 1.")
    if devices_per_run <= 0 or platform == "cpu":
        return [{} for _ in range(max_parallel)]
    groups = len(devices) // devices_per_run
    if groups == 0:
        raise ValueError(
            f"--devices_per_run={devices_per_run} but only {len(devices)} {platform} devices "
            f"are visible ({','.join(devices) or 'none'})."
        )
    if platform == "tpu" and devices_per_run not in TPU_BOUNDS:
        raise ValueError(
            f"--devices_per_run={devices_per_run} on TPU must be one of {sorted(TPU_BOUNDS)} "
            "(a sub-grid of one host's chips)."
        )
    slots = []
    for slot in range(min(groups, max_parallel)):
        ids = ",".join(devices[slot * devices_per_run : (slot + 1) * devices_per_run])
        if platform == "gpu":
            slots.append({"CUDA_VISIBLE_DEVICES": ids})
        else:
            port = str(TPU_BASE_PORT + slot)
            slots.append(
                {
                    "TPU_VISIBLE_CHIPS": ids,
                    "TPU_VISIBLE_DEVICES": ids,
                    "TPU_CHIPS_PER_PROCESS_BOUNDS": TPU_BOUNDS[devices_per_run],
                    "TPU_PROCESS_BOUNDS": "1,1,1",
                    "TPU_PROCESS_PORT": port,
                    "TPU_MESH_CONTROLLER_ADDRESS": f"localhost:{port}",
                    "TPU_MESH_CONTROLLER_PORT": port,
                    # libtpu otherwise refuses to load while another process holds it.
                    "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",
                }
            )
    return slots


def plan(config: str, sweep_path: str, root: str, python: str, extra: list[str]) -> list[Run]:
    """The sweep's runs, checked against the config."""
    entries = sweep.load_sweep(sweep_path, sweep.load_config(config))
    sweep.check_extra_flags(extra, entries)
    return [
        Run(
            name=sweep.run_name(entry),
            argv=sweep.command_for(config, root, entry, python, extra),
            workdir=os.path.join(root, sweep.run_name(entry)),
        )
        for entry in entries
    ]


@dataclasses.dataclass
class _Active:
    """A started run: its process, open log file, device slot and start time."""

    proc: subprocess.Popen
    log: object
    slot: int
    started: float


def _start(run: Run, env_add: dict[str, str], slot: int) -> _Active:
    os.makedirs(run.workdir, exist_ok=True)
    log = open(os.path.join(run.workdir, LOG), "a")  # noqa: SIM115 (closed when the run ends)
    pinned = "".join(f"{k}={shlex.quote(v)} " for k, v in env_add.items())
    log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {pinned}{shlex.join(run.argv)}\n")
    log.flush()
    env = dict(os.environ, PYTHONUNBUFFERED="1", **env_add)
    # A session of its own: the launcher can stop the whole run (grain workers included).
    proc = subprocess.Popen(
        run.argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    return _Active(proc, log, slot, time.time())


def _stop(active: list[_Active]) -> None:
    """SIGTERM every run's process group, then SIGKILL what is left after 10 s."""
    for a in active:
        if a.proc.poll() is None:
            os.killpg(a.proc.pid, signal.SIGTERM)
    deadline = time.time() + 10
    for a in active:
        try:
            a.proc.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(a.proc.pid, signal.SIGKILL)
            a.proc.wait()
        a.log.close()


def execute(runs: list[Run], slots: list[dict[str, str]], poll_s: float = 0.2) -> list[Result]:
    """Run `runs`, one per slot at a time; returns their results in sweep order. Runs whose
    folder holds summary.json are skipped; Ctrl-C stops the running ones."""
    results: dict[str, Result] = {}
    pending = []
    for run in runs:
        if os.path.exists(os.path.join(run.workdir, SUMMARY)):
            results[run.name] = Result(run.name, "skipped")
        else:
            pending.append(run)
    free = list(range(len(slots)))
    running: dict[str, _Active] = {}
    try:
        while pending or running:
            while pending and free:
                run, slot = pending.pop(0), free.pop(0)
                print(f"[start] {run.name}", flush=True)
                running[run.name] = _start(run, slots[slot], slot)
            for name, a in list(running.items()):
                code = a.proc.poll()
                if code is None:
                    continue
                a.log.close()
                del running[name]
                free.append(a.slot)
                wall = time.time() - a.started
                status = "ok" if code == 0 else "failed"
                results[name] = Result(name, status, code, wall)
                print(f"[{status}] {name} (exit {code}, {wall:.0f} s)", flush=True)
            time.sleep(poll_s)
    except KeyboardInterrupt:
        _stop(list(running.values()))
        for name, a in running.items():
            results[name] = Result(name, "interrupted", a.proc.returncode, time.time() - a.started)
    return [results.get(run.name, Result(run.name, "not started")) for run in runs]


def format_table(results: list[Result]) -> str:
    """A plain-text table: run, status, exit code, wall time."""
    rows = [("run", "status", "exit", "wall")]
    for r in results:
        code = "-" if r.returncode is None else str(r.returncode)
        wall = "-" if r.status in ("skipped", "not started") else f"{r.wall_s:.1f}s"
        rows.append((r.name, r.status, code, wall))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The launcher's own flags (those for every run come after `--`)."""
    fv = flag_values
    flags.DEFINE_string("config", None, "Config file (configs/<name>.py[:arg]).", flag_values=fv)
    flags.DEFINE_string("sweep", None, "Sweep file defining get_sweep().", flag_values=fv)
    flags.DEFINE_string(
        "workdir", None, "Root folder; each run gets <root>/<name>.", flag_values=fv
    )
    flags.DEFINE_integer("max_parallel", 1, "Runs at the same time.", flag_values=fv)
    flags.DEFINE_integer(
        "devices_per_run",
        0,
        "Accelerators pinned to each run (0: every run sees every device).",
        flag_values=fv,
    )
    flags.DEFINE_enum(
        "platform",
        "auto",
        ["auto", "gpu", "tpu", "cpu"],
        "Accelerator kind to pin (auto: detect).",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "devices", None, "Comma-separated device ids to use (default: all found).", flag_values=fv
    )
    flags.DEFINE_string("python", sys.executable, "Interpreter for the runs.", flag_values=fv)
    flags.DEFINE_bool("dry_run", False, "Print the commands; run nothing.", flag_values=fv)
    flags.mark_flags_as_required(["config", "sweep", "workdir"], flag_values=fv)


def main(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> int:
    """The program, given argv = [program, *flags for every run] after flag parsing: 0 when
    every run succeeded (or was skipped), 1 otherwise, 130 after Ctrl-C."""
    fv = flag_values
    try:
        runs = plan(fv.config, fv.sweep, fv.workdir, fv.python, extra=argv[1:])
        platform, devices = detect_accelerators(fv.platform)
        if fv.devices is not None:
            devices = [d.strip() for d in fv.devices.split(",") if d.strip()]
        slots = device_slots(platform, devices, fv.devices_per_run, fv.max_parallel)
    except (sweep.SweepError, ValueError) as error:
        return cli.error(str(error), code=1)
    if platform == "cpu" and fv.devices_per_run > 0:
        print("note: no GPU or TPU found; runs are not pinned to devices.")
    elif platform != "cpu" and fv.devices_per_run == 0 and len(slots) > 1:
        print(
            f"note: {len(slots)} runs at a time share every {platform} device; pass "
            "--devices_per_run to give each its own."
        )
    print(f"{len(runs)} runs, {len(slots)} at a time, platform {platform}.")
    if fv.dry_run:
        for i, env in enumerate(slots):
            if env:
                print(f"slot {i}: " + " ".join(f"{k}={v}" for k, v in env.items()))
        for run in runs:
            done = os.path.exists(os.path.join(run.workdir, SUMMARY))
            print(f"{'[skip] ' if done else ''}{shlex.join(run.argv)}")
        return 0
    results = execute(runs, slots)
    print()
    print(format_table(results))
    if any(r.status == "interrupted" for r in results):
        return 130
    return 1 if any(r.status in ("failed", "not started") for r in results) else 0


if __name__ == "__main__":
    cli.run(main, define_flags, sweep.parse_launcher_flags)
