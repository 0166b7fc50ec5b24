"""The command line's contract for bad input: one line on stderr naming the key, file or value,
exit code 2, no traceback, and nothing written (the workdir and data dir are left untouched)."""

import os
import subprocess
import sys

import pytest

from tests.program.helpers import tiny_config
from tests.program.test_train import ROOT, TINY_FLAGS, run_main


def _probe_permission_error() -> str | None:
    """A path whose creation fails with PermissionError even as root, if this machine has one."""
    path = "/sys/fergan-cli-test"
    try:
        os.makedirs(path)
    except PermissionError:
        return path
    except OSError:
        return None
    os.rmdir(path)
    return None


# (extra arguments, text the one error line must contain)
BAD_INPUTS = {
    "unknown key": (["--config.train.nonexistent=1"], "--config.train.nonexistent"),
    "bad value type": (["--config.train.batch_size=abc"], "--config.train.batch_size=abc"),
    "zero batch": (["--config.train.batch_size=0"], "train.batch_size=0"),
    "batch above the data": (["--config.train.batch_size=5000"], "train.batch_size=5000"),
    "unknown variant": (["--config.variant=FOO"], "variant='FOO'"),
    "image size": (["--config.model.image_size=48"], "model.image_size=48"),
    "too many folds": (["--config.data.num_folds=50"], "data.num_folds=50"),
    "fold out of range": (["--config.data.fold=7"], "data.fold"),
    "evaluate without checkpoint": (["--mode=evaluate"], "no checkpoint"),
    "synthesize without input": (["--mode=synthesize"], "needs --input"),
    "synthesize missing input": (["--mode=synthesize", "--input=/no/such.png"], "/no/such.png"),
    "missing identity weights": (["--config.identity.weights=/no/such/w"], "identity.weights"),
    "unknown flag": (["--nonsense=1"], "nonsense"),
    "unknown judge": (["--config.judge.kind=vgg"], "judge.kind='vgg'"),
    "unknown cpu isa": (["--config.determinism.cpu_isa=AVX3"], "determinism.cpu_isa='AVX3'"),
    "synthetic intensity out of range": (
        ["--config.recognizer.synthetic_min_intensity=1.5"],
        "recognizer.synthetic_min_intensity=1.5 must be in [0, 1)",
    ),
    "neutral pairs without neutral frames": (
        ["--config.loss.lambda_neutral=1"],
        "loss.lambda_neutral=1.0 needs data.neutral_first",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    extra, expected = BAD_INPUTS[case]
    workdir, data_dir = tmp_path / "run", tmp_path / "tfds"
    done = run_main(
        "--config", "configs/demo_paper.py", "--workdir", str(workdir), *TINY_FLAGS,
        f"--config.data.data_dir={data_dir}", *extra, timeout=300,
    )  # fmt: skip
    stderr = done.stderr.decode().strip()
    assert done.returncode == 2, stderr[-3000:]
    assert len(stderr.splitlines()) == 1, stderr[-3000:]
    assert stderr.startswith("error: ") and expected in stderr, stderr
    assert "Traceback" not in stderr
    assert not workdir.exists() and not data_dir.exists()


def test_evaluate_of_another_shape_refuses_in_one_line_and_writes_nothing(tmp_path):
    workdir = tmp_path / "run"
    (workdir / "checkpoints" / "10").mkdir(parents=True)
    saved = tiny_config()
    saved.model.width = 0.5
    (workdir / "config.json").write_text(saved.to_json())
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    done = run_main(
        "--config", "configs/demo_paper.py", "--workdir", str(workdir), "--mode=evaluate",
        *TINY_FLAGS, f"--config.data.data_dir={tmp_path / 'tfds'}", timeout=300,
    )  # fmt: skip
    stderr = done.stderr.decode().strip()
    assert done.returncode == 2 and len(stderr.splitlines()) == 1, stderr[-3000:]
    assert "model.width=0.5" in stderr and "model.width=0.125" in stderr
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before
    assert not (tmp_path / "tfds").exists()


def test_an_unwritable_workdir_is_one_line():
    path = _probe_permission_error()
    if path is None:
        pytest.skip("no path here refuses creation with PermissionError")
    done = run_main(
        "--config", "configs/demo_paper.py", "--workdir", path, *TINY_FLAGS, timeout=300
    )  # fmt: skip
    stderr = done.stderr.decode().strip()
    assert done.returncode == 2 and len(stderr.splitlines()) == 1, stderr[-3000:]
    assert path in stderr and "Traceback" not in stderr


def test_debug_flag_shows_the_traceback(tmp_path):
    done = run_main(
        "--config", "configs/demo_paper.py", "--workdir", str(tmp_path / "run"), *TINY_FLAGS,
        "--config.variant=FOO", "--debug", timeout=300,
    )  # fmt: skip
    stderr = done.stderr.decode()
    assert done.returncode == 2
    assert "Traceback" in stderr and stderr.strip().splitlines()[-1].startswith("error: variant=")


def test_help_lists_the_flags():
    done = subprocess.run(
        [sys.executable, "-m", "fergan.main", "--helpshort"],
        cwd=ROOT, capture_output=True, timeout=120,
    )  # fmt: skip
    assert b"--workdir" in done.stdout and b"Traceback" not in done.stderr


def test_progress_line_counts_steps_and_gives_an_hms_eta(capsys, monkeypatch):
    from fergan import console

    with console.progress("train", 4) as bar:
        for done in range(1, 5):
            bar.update(done)
            bar.metrics({"R": 0.5, "per replica": [1.0, 3.0]})
    out = capsys.readouterr().out.replace("\r", "\n")
    assert "train 4/4 100%" in out and "R 0.5 per replica 2" in out
    assert console.hms(3725.4) == "1:02:05" and console.hms(None) == "?"
    # Every process but the first gets a disabled bar, which accepts the same calls.
    monkeypatch.setattr(console, "_is_main_process", lambda: False)
    with console.progress("train", 4) as bar:
        bar.update(2)
        bar.metrics({"R": 0.5})
    assert capsys.readouterr().out == ""
