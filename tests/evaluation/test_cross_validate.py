"""Cross-validation end to end on the synthetic set: 2 folds x 2 variants at a tiny size finish,
resume after an interruption without re-running finished folds, and the aggregate matches the
per-fold JSON; plus the per-fold metrics on known inputs."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from fergan import methods
from fergan.data import pipeline
from fergan.evaluation import cv_metrics
from fergan.experiments import cross_validate as cv
from fergan.experiments import train
from fergan.methods.fesr import evaluation as fesr_evaluation
from fergan.methods.fesr import rendering
from fergan.methods.fesr.hparams import make_hparams
from fergan.methods.fesr.model import FesrModel
from fergan.methods.fesr.networks import build_networks
from fergan.methods.fesr.state import init_state
from tests.core.helpers import tiny_config
from tests.evaluation.cv_config import get_config as cv_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARIANTS = ["BASELINE", "FESR_JL"]
NUM_FOLDS = 2
INTERRUPT_AT = 3  # The 3rd training call (fold 1, BASELINE) stops mid-run, as a preemption.
STOP_STEP = 4


class PreemptedError(Exception):
    """Stands for the end of a process in the middle of a fold."""


@pytest.fixture(scope="module")
def interrupted_then_resumed(tmp_path_factory):
    """Runs the CV, interrupted at the 3rd training, then again to completion.

    Returns (workdir, payload, calls of the second run, summary mtimes after the first run).
    """
    workdir = str(tmp_path_factory.mktemp("cv"))
    real_train = train.train_and_evaluate
    calls = []
    preempt = [True]  # Only the first run is preempted.

    def interrupted(config, fdir, stop_after=None):
        calls.append((config.variant, config.data.fold))
        if preempt[0] and len(calls) == INTERRUPT_AT:
            preempt[0] = False
            real_train(config, fdir, stop_after=STOP_STEP)  # Leaves a checkpoint at STOP_STEP.
            raise PreemptedError
        return real_train(config, fdir, stop_after)

    mp = pytest.MonkeyPatch()
    mp.setattr(train, "train_and_evaluate", interrupted)
    with pytest.raises(PreemptedError):
        cv.cross_validate(cv_config(), workdir, VARIANTS)
    first_calls = list(calls)
    mtimes = {
        (v, f): os.path.getmtime(os.path.join(cv.fold_dir(workdir, v, f), "summary.json"))
        for v, f in first_calls[: INTERRUPT_AT - 1]
    }
    calls.clear()
    payload = cv.cross_validate(cv_config(), workdir, VARIANTS)
    mp.undo()
    return workdir, payload, first_calls, list(calls), mtimes


def test_resume_skips_finished_folds_and_continues_the_interrupted_one(interrupted_then_resumed):
    workdir, _, first_calls, calls, mtimes = interrupted_then_resumed
    assert first_calls == [("BASELINE", 0), ("FESR_JL", 0), ("BASELINE", 1)]
    # Fold 0 is not trained again; everything else trains once.
    assert calls == [("BASELINE", 1), ("FESR_JL", 1)]
    for (v, f), mtime in mtimes.items():
        assert os.path.getmtime(os.path.join(cv.fold_dir(workdir, v, f), "summary.json")) == mtime
    with open(os.path.join(cv.fold_dir(workdir, "BASELINE", 1), cv.FOLD_RESULT)) as f:
        resumed = json.load(f)
    assert resumed["train_summary"]["resumed_from_step"] == STOP_STEP
    # BASELINE makes only the stage-2 updates: 5 of the 10 steps.
    assert resumed["steps"] == resumed["train_summary"]["steps"] == 5


def _fold_results(workdir):
    out = {}
    for v in VARIANTS:
        for f in range(NUM_FOLDS):
            with open(os.path.join(cv.fold_dir(workdir, v, f), cv.FOLD_RESULT)) as fh:
                out[v, f] = json.load(fh)
    return out


def test_fold_results_hold_every_metric(interrupted_then_resumed):
    workdir, *_ = interrupted_then_resumed
    results = _fold_results(workdir)
    subjects = [set(results["FESR_JL", f]["test_subjects"]) for f in range(NUM_FOLDS)]
    assert set.union(*subjects) == set(range(1, 5)) and sum(map(len, subjects)) == 4
    for (v, f), r in results.items():
        assert r["variant"] == v and r["fold"] == f and r["num_folds"] == NUM_FOLDS
        cm = np.asarray(r["confusion_matrix"])
        # Peak frames only: one per test subject and expression.
        assert cm.shape == (7, 7) and cm.sum() == r["num_examples"] == 7 * len(subjects[f])
        assert r["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
        # The same final state and test set as the training run's own evaluation.
        assert r["accuracy"] == pytest.approx(r["train_summary"]["eval"]["accuracy"])
        for k, acc in enumerate(r["per_class_accuracy"]):
            assert acc == pytest.approx(cm[k, k] / cm[k].sum())
        with np.load(os.path.join(cv.fold_dir(workdir, v, f), cv.FEATURES)) as feats:
            assert feats["real_features"].shape[0] == r["num_examples"]
            assert ("synthetic_features" in feats) == (v == "FESR_JL")
        assert os.path.getsize(os.path.join(cv.fold_dir(workdir, v, f), cv.CURVES)) > 1000
        if v == "BASELINE":  # No generator: no synthesis metrics.
            assert r["synthesis"] is None and r["verification"] is None
        else:
            # Each test subject: 7 x 6 ordered expression pairs; 2 x 7 verification pairs a face.
            assert r["synthesis"]["num_pairs"] == 42 * len(subjects[f])
            assert r["verification"]["num_pairs"] == 14 * r["num_examples"]
            # A rate over the test pairs: a whole number of them verified correctly.
            correct = r["verification"]["rate"] * r["verification"]["num_pairs"]
            assert correct == pytest.approx(round(correct), abs=1e-6)


def test_fold_synthesis_is_the_final_generator_against_the_target_faces(
    interrupted_then_resumed,
):
    workdir, *_ = interrupted_then_resumed
    fdir = cv.fold_dir(workdir, "FESR_JL", 0)
    setup = train.Setup(cv.fold_config(cv_config(), workdir, "FESR_JL", 0), fdir)
    try:
        state = setup.checkpoints.restore(setup.initial_state)[0]
    finally:
        setup.checkpoints.close()
    test = pipeline.eval_arrays(setup.datasets, "test")
    renders = cv_metrics.render_all(setup.editor(state), test["x"], setup.model.num_classes)
    # PSNR by hand: face i rendered with the expression of j, against j (same subject).
    src, tgt = cv_metrics.same_subject_pairs(test["y"], test["subject"])
    mse = np.mean((renders[src, test["y"][tgt]] - test["x"][tgt]) ** 2, axis=(1, 2, 3))
    synthesis = _fold_results(workdir)["FESR_JL", 0]["synthesis"]
    assert synthesis["num_pairs"] == len(src)
    assert synthesis["psnr"] == pytest.approx(np.mean(10 * np.log10(4.0 / mse)), rel=1e-4)


def _table_rows(markdown):
    """variant -> cells of the first (accuracy) table."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| variant"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.setdefault(cells[0], cells[1:])  # The accuracy table comes first.
        elif rows and not line.startswith("|"):
            break
    return rows


def test_aggregate_matches_the_fold_json(interrupted_then_resumed):
    workdir, payload, *_ = interrupted_then_resumed
    results = _fold_results(workdir)
    with open(os.path.join(workdir, cv.CV_JSON)) as f:
        on_disk = json.load(f)
    assert on_disk["variants"] == payload["variants"]
    with open(os.path.join(workdir, cv.CV_MARKDOWN)) as f:
        rows = _table_rows(f.read())
    assert list(rows) == VARIANTS
    for v in VARIANTS:
        accs = [results[v, f]["accuracy"] for f in range(NUM_FOLDS)]
        summary = on_disk["variants"][v]
        assert summary["complete"] and summary["accuracy_per_fold"] == accs
        assert summary["accuracy_mean"] == pytest.approx(np.mean(accs))
        assert summary["accuracy_std"] == pytest.approx(np.std(accs))
        expected = [f"{100 * a:.2f}" for a in [*accs, np.mean(accs), np.std(accs)]]
        assert rows[v] == expected
        cm = sum(np.asarray(results[v, f]["confusion_matrix"]) for f in range(NUM_FOLDS))
        assert np.array_equal(summary["confusion_matrix"], cm)
    jl = on_disk["variants"]["FESR_JL"]
    psnr = [results["FESR_JL", f]["synthesis"]["psnr"] for f in range(NUM_FOLDS)]
    assert jl["psnr_per_fold"] == psnr and jl["psnr_mean"] == pytest.approx(np.mean(psnr))
    assert on_disk["variants"]["BASELINE"]["psnr_mean"] is None
    for name in [
        "confusion_BASELINE.png",
        "confusion_FESR_JL.png",
        "tsne.png",
        "FESR_JL/expressions.png",
        "FESR_JL/intensity_sweep.png",
        "FESR_JL/prior_faces.png",
        "FESR_JL/training_curves.png",
        "BASELINE/training_curves.png",
    ]:
        assert os.path.getsize(os.path.join(workdir, cv.FIGURES, name)) > 1000, name


def test_aggregate_mode_collects_folds_run_elsewhere(interrupted_then_resumed, tmp_path):
    """`--mode aggregate` in a fresh process, on a workdir holding only some folds' results
    (as when folds run in separate processes and some have not finished)."""
    workdir, payload, *_ = interrupted_then_resumed
    partial = str(tmp_path / "cv")
    for v in VARIANTS:
        for f in (1,):  # Fold 0 still running elsewhere.
            src, dst = cv.fold_dir(workdir, v, f), cv.fold_dir(partial, v, f)
            os.makedirs(dst)
            for name in (cv.FOLD_RESULT, cv.FEATURES):
                with (
                    open(os.path.join(src, name), "rb") as a,
                    open(os.path.join(dst, name), "wb") as b,
                ):
                    b.write(a.read())
    cmd = [
        sys.executable, "-m", "fergan.main", "--config", "tests/evaluation/cv_config.py",
        "--workdir", partial, "--mode", "aggregate",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(partial, cv.CV_JSON)) as f:
        partial_payload = json.load(f)
    for v in VARIANTS:
        full, part = payload["variants"][v], partial_payload["variants"][v]
        assert part["folds_finished"] == [1] and not part["complete"]
        assert part["accuracy_per_fold"] == [None, full["accuracy_per_fold"][1]]
    assert re.search(r"\| BASELINE \| n/a \| [\d.]+ \| n/a \| n/a \|", proc.stdout)


def test_same_subject_pairs_and_synthesis_metrics():
    labels = np.array([0, 1, 2, 0, 1])
    subjects = np.array([1, 1, 1, 2, 2])
    src, tgt = cv_metrics.same_subject_pairs(labels, subjects)
    pairs = set(zip(src.tolist(), tgt.tolist(), strict=True))
    assert pairs == {(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (3, 4), (4, 3)}
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (5, 16, 16, 1)).astype(np.float32)
    # A perfect generator renders face i with expression k as the subject's real face k.
    perfect = np.zeros((5, 3, 16, 16, 1), np.float32)
    for i in range(5):
        for j in range(5):
            if subjects[i] == subjects[j]:
                perfect[i, labels[j]] = x[j]
    out = cv_metrics.synthesis_metrics(perfect, x, labels, subjects)
    assert out["num_pairs"] == 8 and out["psnr"] == np.inf and out["ssim"] == pytest.approx(1.0)
    # From neutral faces (y = -1): one per subject, paired with every real face of its subject.
    neutral = {"y": np.array([-1, -1]), "subject": np.array([1, 2])}
    from_neutral = perfect[[0, 3]]
    out = cv_metrics.synthesis_metrics(from_neutral, x, labels, subjects, neutral)
    assert out["num_pairs"] == 5 and out["psnr"] == np.inf
    wrong = np.roll(from_neutral, 1, axis=1)  # Expressions shifted: no longer the real faces.
    assert cv_metrics.synthesis_metrics(wrong, x, labels, subjects, neutral)["psnr"] < 20


def test_renders_use_the_configured_off_value():
    config = tiny_config()
    config.model.inference_off_value = 0.1
    nets = build_networks(config.model)
    hp = make_hparams(config, 1)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 1)).astype(np.float32)
    state = init_state(nets, 0, hp.b1, hp.b2)
    g = state.g.params
    k, n = nets.num_classes, nets.latent_dim
    model = FesrModel(nets, hp)
    renders = cv_metrics.render_all(fesr_evaluation.editor(model, state), x, k)
    np.testing.assert_allclose(
        renders, rendering.render_expressions(nets.generator, g, x, k, 1.0, 0.1), atol=1e-5
    )
    default = FesrModel(dataclasses.replace(nets, inference_off_value=0.5), hp)
    assert (
        np.abs(renders - cv_metrics.render_all(fesr_evaluation.editor(default, state), x, k)).max()
        > 1e-3
    )
    faces, labels = fesr_evaluation.synthetic_faces(model, state, per_class=2, seed=3)
    prior = rendering.prior_faces(nets.generator, g, jax.random.PRNGKey(3), 2, k, n, 0.1)
    np.testing.assert_allclose(faces, np.reshape(prior, faces.shape), atol=1e-6)
    np.testing.assert_array_equal(labels, np.tile(np.arange(k), 2))
    default_faces, _ = fesr_evaluation.synthetic_faces(default, state, per_class=2, seed=3)
    assert np.abs(faces - default_faces).max() > 1e-3


def test_verification_pairs_and_threshold():
    rng = np.random.default_rng(1)
    subjects = np.repeat(np.arange(4), 3)
    centres = rng.normal(size=(4, 8))
    real = centres[subjects] + 0.05 * rng.normal(size=(12, 8))
    generated = centres[subjects][:, None] + 0.05 * rng.normal(size=(12, 2, 8))
    a, b, same = cv_metrics.verification_pairs(real, generated, subjects, seed=0)
    assert a.shape == b.shape == (48, 8) and same.sum() == 24
    np.testing.assert_array_equal(b[0], generated[0, 0])  # Face 0's own first render.
    result = cv_metrics.verification_metrics(
        (real, generated, subjects), (real, generated, subjects), seed=0
    )
    assert result["rate"] == 1.0 and result["num_pairs"] == 48
    assert (
        cv_metrics.verification_metrics(
            (real, generated, subjects), (real[:3], generated[:3], subjects[:3]), 0
        )
        is None
    )


def test_tsne_order_puts_the_intra_class_pair_side_by_side():
    first = methods.get("fesr").tsne_first
    assert cv.tsne_order(["FESR_JL", "FESR_JL-RDBP", "FESR_JL-IL"], first) == [
        "FESR_JL-IL",
        "FESR_JL",
        "FESR_JL-RDBP",
    ]
    assert cv.tsne_order(["FESR_JL", "FESR_JL-RDBP"], first) == ["FESR_JL", "FESR_JL-RDBP"]


def test_fold_config_shares_the_data_dir_and_checks_the_fold(tmp_path):
    config = cv_config()
    a = cv.fold_config(config, str(tmp_path), "BASELINE", 0)
    b = cv.fold_config(config, str(tmp_path), "FESR_JL", 1)
    assert a.data.data_dir == b.data.data_dir == str(tmp_path / "tfds")
    assert (a.variant, a.data.fold, b.data.fold) == ("BASELINE", 0, 1)
    assert config.variant == "FESR_JL" and config.data.fold == 0  # The input is not changed.
    with pytest.raises(ValueError, match="fold=2"):
        cv.fold_config(config, str(tmp_path), "FESR_JL", 2)
    with pytest.raises(ValueError, match="unknown"):
        cv.fold_config(config, str(tmp_path), "NOPE", 0)


def test_per_pose_accuracy_is_averaged_over_folds_and_tabled():
    def fold(accuracy, per_pose):
        evaluation = {f"accuracy_pose_{yaw}": a for yaw, a in per_pose.items()}
        return {"accuracy": accuracy, "synthesis": None, "verification": None,
                "confusion_matrix": np.eye(2, dtype=int).tolist(), "judge": None,
                "train_summary": {"eval": {"accuracy": accuracy} | evaluation}}  # fmt: skip

    results = {0: fold(0.5, {-15: 0.4, 0: 0.6}), 2: fold(0.7, {-15: 0.6, 0: 0.8})}
    summary = cv._variant_summary(results, 3)
    assert summary["poses"] == [-15, 0]
    assert summary["accuracy_pose_-15_mean"] == pytest.approx(0.5)
    assert summary["accuracy_pose_0_std"] == pytest.approx(0.1)
    payload = {"variants": {"GEO": summary}, "num_folds": 3, "dataset": "synthetic_faces",
               "config": "demo_geometry", "class_names": ["a", "b"], "judge": None}  # fmt: skip
    text = cv.results_markdown(payload)
    assert "| variant | -15° | +0° |" in text and "| GEO | 50.0 ± 10.0 | 70.0 ± 10.0 |" in text
    # A single-pose CV has no pose table.
    flat = cv._variant_summary({0: fold(0.5, {})}, 1)
    assert flat["poses"] == [] and "per pose" not in cv.results_markdown(
        payload | {"variants": {"FESR_JL": flat}}
    )
