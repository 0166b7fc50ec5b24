"""fergan/launch/slurm.sh and fergan/launch/tpu_pod.sh: the commands their --dry-run prints."""

import os
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLURM = os.path.join(ROOT, "fergan", "launch", "slurm.sh")
TPU_POD = os.path.join(ROOT, "fergan", "launch", "tpu_pod.sh")
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def bash(*args, env=None, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=check
    )


def main_command(workdir: str, seed: int, extra=()) -> list[str]:
    return [
        sys.executable, "-m", "fergan.main", "--config", "configs/demo_paper.py",
        "--workdir", f"{workdir}/variant=BASELINE,seed={seed}", *extra,
        "--config.variant=BASELINE", f"--config.seed={seed}",
    ]  # fmt: skip


def test_slurm_dry_run_prints_sbatch_and_every_task(tmp_path):
    root = str(tmp_path / "runs x")
    args = [
        "--config", "configs/demo_paper.py", "--sweep", "sweeps/smoke.py", "--workdir", root,
        "--python", sys.executable,
    ]  # fmt: skip
    extra = ["--config.train.max_epochs=2"]
    out = bash(
        SLURM, *args, "--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu",
        "--time", "2:00:00", "--max-concurrent", "1", "--sbatch-arg=--exclusive", "--dry-run",
        "--", *extra,
    ).stdout.splitlines()  # fmt: skip
    sbatch = shlex.split(out[1])
    assert sbatch == [
        "sbatch", "--job-name=fergan", "--array=0-1%1", "--nodes=2", "--ntasks-per-node=4",
        "--gpus-per-node=4", "--cpus-per-task=8", f"--chdir={ROOT}",
        f"--output={root}/slurm-%A_%a.out", "--partition=gpu", "--time=2:00:00", "--exclusive",
        SLURM, "--task", *args, "--", *extra,
    ]  # fmt: skip
    tasks = [line for line in out if line.startswith("[task ")]
    assert len(tasks) == 2
    for index, line in enumerate(tasks):
        prefix = f"[task {index}] "
        assert line.startswith(prefix)
        assert shlex.split(line[len(prefix) :]) == [
            "srun", "--kill-on-bad-exit=1", *main_command(root, index, extra),
        ]  # fmt: skip
    assert not os.path.exists(root)  # A dry run creates nothing.


def test_slurm_task_mode_picks_the_array_index(tmp_path):
    root = str(tmp_path)
    args = [
        SLURM, "--task", "--config", "configs/demo_paper.py", "--sweep", "sweeps/smoke.py",
        "--workdir", root, "--python", sys.executable, "--dry-run",
    ]  # fmt: skip
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="1")
    line = bash(*args, env=env).stdout.strip()
    assert line.startswith("[task 1] srun --kill-on-bad-exit=1 ")
    assert shlex.split(line[len("[task 1] ") :])[2:] == main_command(root, 1)
    os.makedirs(f"{root}/variant=BASELINE,seed=1")
    open(f"{root}/variant=BASELINE,seed=1/summary.json", "w").close()
    assert "skipped" in bash(*args, env=env).stdout
    env.pop("SLURM_ARRAY_TASK_ID")
    missing = bash(*args, env=env, check=False)
    assert missing.returncode != 0 and "SLURM_ARRAY_TASK_ID" in missing.stderr


def test_slurm_refuses_a_bad_sweep():
    out = bash(
        SLURM, "--config", "configs/demo_paper.py", "--sweep", "sweeps/seeds.py",
        "--workdir", "/tmp/x", "--python", sys.executable, "--dry-run", "--", "--config.seed=2",
        check=False,
    )  # fmt: skip
    assert out.returncode != 0 and "also sets" in out.stderr


def test_tpu_pod_dry_run_prints_the_gcloud_command():
    env = dict(os.environ, TPU_NAME="pod-a", ZONE="us-central2-b")
    env.pop("PROJECT_ID", None)
    out = bash(
        TPU_POD, "--project", "proj", "--config", "configs/demo_paper.py",
        "--workdir", "/mnt/shared/runs/it's here", "--repo-dir", "code/fergan", "--dry-run",
        "--", "--config.seed=1", "--config.variant=FESR_JL", env=env,
    ).stdout.splitlines()  # fmt: skip
    worker = [
        "env", "FERGAN_DISTRIBUTED=1", "python3", "-m", "fergan.main", "--config",
        "configs/demo_paper.py", "--workdir", "/mnt/shared/runs/it's here", "--config.seed=1",
        "--config.variant=FESR_JL",
    ]  # fmt: skip
    assert out[1].startswith("cd code/fergan && ")
    assert shlex.split(out[1][len("cd code/fergan && ") :]) == worker
    gcloud = shlex.split(out[3])
    assert gcloud[:-1] == [
        "gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod-a", "--zone=us-central2-b",
        "--project=proj", "--worker=all",
    ]  # fmt: skip
    assert gcloud[-1] == f"--command={out[1]}"


def test_tpu_pod_needs_a_name_and_zone():
    env = {k: v for k, v in os.environ.items() if k not in ("TPU_NAME", "ZONE")}
    out = bash(TPU_POD, "--config", "c.py", "--workdir", "w", "--dry-run", env=env, check=False)
    assert out.returncode == 2 and "--tpu" in out.stderr
