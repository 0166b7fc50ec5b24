"""Subject-independent k-fold cross-validation over variants (Table V, Fig. 8), with each fold's
synthesis (Table III) and verification (Table IV) metrics and the figures of a CV run.

Layout of a CV workdir:
  tfds/                          the TFDS data dir every fold shares (unless data.data_dir is set)
  identity/fold_<i>/identity_weights
                                 fold i's LightCNN-29, trained on fold i's training subjects only
                                 (identity.pretrain), shared by every variant of that fold
  <variant>/fold_<i>/            one full two-stage training (train.train_and_evaluate), then
                                 fold_result.json, features.npz and training_curves.png
  cv_results.json, cv_results.md, figures/

A fold with fold_result.json is done; one with summary.json (training finished) is only
evaluated; any other fold trains, resuming from its latest checkpoint. Folds can be run by
separate processes (`fold=`), each running every requested variant of its fold, and
`aggregate` collects whatever has finished.
"""

import json
import math
import os
import shutil
import time
from collections.abc import Sequence

import ml_collections
import numpy as np
from absl import logging

from fergan import methods
from fergan.config_utils import editable_copy
from fergan.data import pipeline
from fergan.data.preprocess import to_float
from fergan.evaluation import cv_metrics, figures, judge, measures
from fergan.experiments import train
from fergan.files import atomic_write, save_npz, write_json
from fergan.identity import ensure_weights

FOLD_RESULT = "fold_result.json"
FEATURES = "features.npz"
CURVES = "training_curves.png"
CV_JSON = "cv_results.json"
CV_MARKDOWN = "cv_results.md"
FIGURES = "figures"
SAMPLE_FIGURES = ("expressions.png", "intensity_sweep.png", "prior_faces.png", "targets.png")
POSE_PREFIX = "accuracy_pose_"  # Per-pose accuracies of a fold's final evaluation (heldout).
# Population std over folds (numpy's default), stated in the table.
STD_DDOF = 0
# Training faces (peak frames) used to choose the verification threshold; caps the cost at 128 px.
MAX_THRESHOLD_FACES = 256


def fold_dir(workdir: str, variant: str, fold: int) -> str:
    """`<workdir>/<variant>/fold_<fold>`: one fold's training run."""
    return os.path.join(workdir, variant, f"fold_{fold}")


def identity_dir(workdir: str, fold: int) -> str:
    """Folder of fold `fold`'s pretrained identity network (shared by the variants)."""
    return os.path.join(workdir, "identity", f"fold_{fold}")


def fold_config(
    config: ml_collections.ConfigDict, workdir: str, variant: str, fold: int
) -> ml_collections.ConfigDict:
    """A copy of `config` for one fold of one variant, reading the CV run's shared data dir."""
    methods.of(config).variant(variant)
    if not 0 <= fold < config.data.num_folds:
        raise ValueError(
            f"fold={fold} must be in [0, {config.data.num_folds - 1}] (data.num_folds)."
        )
    cfg = editable_copy(config)
    cfg.variant = variant
    cfg.data.fold = fold
    # Absolute, so every fold (and every process) builds the dataset once, in one place.
    cfg.data.data_dir = os.path.abspath(os.path.expanduser(pipeline.data_dir(config, workdir)))
    return cfg


def _threshold_faces(
    datasets: pipeline.Datasets, seed: int, neutral: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peak frames (or with `neutral` the neutral faces) of the training subjects, at most
    MAX_THRESHOLD_FACES: x [M, S, S, c] in [-1, 1], subject ids [M] and landmarks [M, 68, 2]."""
    src = datasets.train_neutral if neutral else datasets.train
    idx = np.arange(len(src)) if neutral else np.flatnonzero(src.is_peak)
    if len(idx) > MAX_THRESHOLD_FACES:
        rng = np.random.default_rng([seed, 0x7E5])
        idx = np.sort(rng.choice(idx, MAX_THRESHOLD_FACES, replace=False))
    rows = [src[int(i)] for i in idx]
    x = to_float(np.stack([r["image"] for r in rows]))
    landmarks = np.stack([r["landmarks"] for r in rows]).astype(np.float32)
    return x, src.subjects[idx], landmarks


def _plot_curves(fdir: str) -> bool:
    """training_curves.png from the fold's events: losses and accuracies per step."""
    history = {
        tag.removeprefix("train/"): series
        for tag, series in cv_metrics.read_scalars(fdir).items()
        if tag.startswith(("train/loss/", "train/acc/", "train/gp")) or tag == "eval/accuracy"
    }
    if not history:
        return False
    figures.plot_training_curves(os.path.join(fdir, CURVES), history, group_by="key", smoothing=0.6)
    return True


def evaluate_fold(config: ml_collections.ConfigDict, fdir: str) -> dict:
    """Metrics of a fold's final checkpoint on its test subjects' peak frames.

    Writes `features.npz` (Rext features of the real test faces and of x_pf, for Fig. 9) and
    `training_curves.png` into `fdir`. Returns the JSON-ready fold result: recognition metrics
    (accuracy, per-class accuracy, confusion matrix), `synthesis` (PSNR/SSIM) and
    `verification` (rate, threshold); the last two are None for a variant without a generator.
    """
    setup = train.Setup(config, fdir)
    try:
        restored = setup.checkpoints.restore(setup.initial_state)
        if restored is None:
            raise FileNotFoundError(f"No checkpoint in {fdir} to evaluate.")
        state = restored[0]
        method, model = setup.method, setup.model
        datasets, seed, k = setup.datasets, int(config.seed), setup.model.num_classes
        test = pipeline.eval_arrays(datasets, "test")
        _, out = setup.held_out(state, test)
        editor = setup.editor(state)
        result = {
            "variant": config.variant,
            "fold": int(config.data.fold),
            "num_folds": int(config.data.num_folds),
            "dataset": config.data.name,
            "steps": int(state.step),
            "class_names": list(datasets.class_names),
            "test_subjects": sorted(int(s) for s in np.unique(test["subject"])),
            "num_train_subjects": datasets.num_train_subjects,
            **cv_metrics.recognition_metrics(test["y"], out["prediction"], k),
            "synthesis": None,
            "verification": None,
            # edit_accuracy, judge_accuracy_real, intensity_*, linear_probe_accuracy, judge.
            "judge": setup.judge_metrics(state, test),
        }
        features = {"real_features": out["feature"], "real_labels": test["y"]}
        # The faces edits start from: the test faces, or their subjects' neutral faces.
        sources = setup.edit_sources(test)
        if editor is not None:
            renders = cv_metrics.render_all(editor, sources["x"], k, landmarks=sources["landmarks"])
            result["synthesis"] = cv_metrics.synthesis_metrics(
                renders,
                test["x"],
                test["y"],
                test["subject"],
                sources if method.edits_from_neutral else None,
            )
        if editor is not None and method.identity_features:
            identity = method.identity_features(model, state)
            train_x, train_subjects, train_marks = _threshold_faces(
                datasets, seed, method.edits_from_neutral
            )
            train_renders = cv_metrics.render_all(editor, train_x, k, landmarks=train_marks)
            result["verification"] = cv_metrics.verification_metrics(
                cv_metrics.identity_split(identity, train_x, train_subjects, train_renders),
                cv_metrics.identity_split(identity, sources["x"], sources["subject"], renders),
                seed,
            )
        # As many synthetic faces per class as the test fold has real faces per class.
        per_class = max(1, math.ceil(len(test["y"]) / k))
        synthetic = (
            method.synthetic_faces(model, state, per_class, seed)
            if method.synthetic_faces
            else None
        )
        if synthetic is not None:
            fake_x, fake_y = synthetic
            features["synthetic_features"] = setup.held_out(state, {"x": fake_x, "y": fake_y})[1][
                "feature"
            ]
            features["synthetic_labels"] = fake_y
        save_npz(os.path.join(fdir, FEATURES), **features)
        _plot_curves(fdir)
        return result
    finally:
        setup.checkpoints.close()


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def run_fold(
    config: ml_collections.ConfigDict,
    workdir: str,
    variant: str,
    fold: int,
) -> dict:
    """Trains (or resumes, or skips) one fold of one variant and returns its fold result.

    With `identity.pretrain` and no `identity.weights`, the fold's identity network (of a method
    that has one) is trained on the fold's training subjects once, into `identity/fold_<i>`,
    and shared by the variants.
    """
    fdir = fold_dir(workdir, variant, fold)
    result_path = os.path.join(fdir, FOLD_RESULT)
    if os.path.exists(result_path):
        logging.info("CV %s fold %d: finished earlier (%s).", variant, fold, result_path)
        return _read_json(result_path)
    cfg = fold_config(config, workdir, variant, fold)
    has_identity = methods.of(cfg).has_identity_network
    if has_identity and cfg.identity.pretrain and not cfg.identity.weights:
        cfg.identity.weights = ensure_weights(cfg, identity_dir(workdir, fold))
    if methods.of(cfg).prepare:  # Shared by the folds and variants (nothing fold-specific).
        methods.of(cfg).prepare(cfg, workdir)
    summary_path = os.path.join(fdir, "summary.json")
    if not os.path.exists(summary_path):
        logging.info("CV %s fold %d: training in %s.", variant, fold, fdir)
        train.train_and_evaluate(cfg, fdir)
    summary = _read_json(summary_path)
    result = evaluate_fold(cfg, fdir)
    result["train_summary"] = {
        k: summary.get(k)
        for k in ("steps", "stage1_steps", "resumed_from_step", "wall_time_s", "eval")
    }
    write_json(result_path, result)
    logging.info("CV %s fold %d: accuracy %.4f.", variant, fold, result["accuracy"])
    return result


def cross_validate(
    config: ml_collections.ConfigDict,
    workdir: str,
    variants: Sequence[str] | None = None,
    fold: int = -1,
) -> dict:
    """Runs the k-fold protocol (`data.num_folds`) for `variants` (default: the config's).

    `fold` >= 0 runs only that fold (one process per fold); -1 runs all folds here. Folds run
    fold by fold, each fold's variants one after the other, so fold i's identity network is
    trained once. Ends with `aggregate` over whatever has finished; returns its result.
    """
    variants = list(variants or [config.variant])
    for name in variants:
        methods.of(config).variant(name)
    num_folds = int(config.data.num_folds)
    if fold >= num_folds:
        raise ValueError(f"--fold={fold} must be in [0, {num_folds - 1}] or -1 (all folds).")
    start = time.time()
    os.makedirs(workdir, exist_ok=True)
    for f in range(num_folds) if fold < 0 else [fold]:
        for name in variants:
            run_fold(config, workdir, name, f)
    logging.info("Cross-validation folds done in %.1f s.", time.time() - start)
    return aggregate(config, workdir, variants)


def finished_variants(workdir: str, order: Sequence[str] = ()) -> list[str]:
    """Variants with at least one fold_result.json in `workdir`, in the order of `order` (the
    method's variants), then by name."""
    found = []
    if os.path.isdir(workdir):
        for name in os.listdir(workdir):
            folder = os.path.join(workdir, name)
            if os.path.isdir(folder) and any(
                os.path.exists(os.path.join(folder, d, FOLD_RESULT)) for d in os.listdir(folder)
            ):
                found.append(name)
    order = {name: i for i, name in enumerate(order)}
    return sorted(found, key=lambda n: (order.get(n, len(order)), n))


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    vals = np.asarray([v for v in values if v is not None], np.float64)
    if vals.size == 0:
        return None, None
    return float(vals.mean()), float(vals.std(ddof=STD_DDOF))


def _variant_summary(results: dict[int, dict], num_folds: int) -> dict:
    """Per-fold lists (None where a fold has not finished), their mean/std, and the confusion
    matrix summed over the finished folds."""
    per_fold = lambda get: [get(results[f]) if f in results else None for f in range(num_folds)]
    accuracy = per_fold(lambda r: r["accuracy"])
    psnr = per_fold(lambda r: (r["synthesis"] or {}).get("psnr"))
    ssim = per_fold(lambda r: (r["synthesis"] or {}).get("ssim"))
    verification = per_fold(lambda r: (r["verification"] or {}).get("rate"))
    cm = np.sum([np.asarray(r["confusion_matrix"]) for r in results.values()], axis=0)
    summary = {
        "folds_finished": sorted(results),
        "complete": len(results) == num_folds,
        "accuracy_per_fold": accuracy,
        "psnr_per_fold": psnr,
        "ssim_per_fold": ssim,
        "verification_rate_per_fold": verification,
        "confusion_matrix": cm.tolist(),
        "per_class_accuracy": [
            None if np.isnan(a) else float(a) for a in measures.per_class_accuracy(cm)
        ],
    }
    for name, values in (
        ("accuracy", accuracy),
        ("psnr", psnr),
        ("ssim", ssim),
        ("verification_rate", verification),
    ):
        summary[f"{name}_mean"], summary[f"{name}_std"] = _mean_std(values)
    # Accuracy per pose (several poses only), from each fold's final evaluation.
    final = lambda r: (r.get("train_summary") or {}).get("eval") or {}
    poses = sorted(
        {int(k[len(POSE_PREFIX) :]) for r in results.values() for k in final(r)
         if k.startswith(POSE_PREFIX)}
    )  # fmt: skip
    summary["poses"] = poses
    for yaw in poses:
        values = per_fold(lambda r, yaw=yaw: final(r).get(f"{POSE_PREFIX}{yaw}"))
        summary[f"{POSE_PREFIX}{yaw}_mean"], summary[f"{POSE_PREFIX}{yaw}_std"] = _mean_std(values)
    for name in judge.METRICS:  # Folds evaluated before the judge existed count as missing.
        values = per_fold(lambda r, name=name: (r.get("judge") or {}).get(name))
        summary[f"{name}_per_fold"] = values
        summary[f"{name}_mean"], summary[f"{name}_std"] = _mean_std(values)
    return summary


def _fmt(mean: float | None, std: float | None, scale: float, decimals: int) -> str:
    if mean is None:
        return "-"
    return f"{scale * mean:.{decimals}f} ± {scale * std:.{decimals}f}"


def results_markdown(payload: dict) -> str:
    """The CV report: accuracy per fold with mean and std (Table V / Fig. 8), synthesis and
    verification (Tables III-IV), accuracy per pose (data of several poses) and per-class
    accuracy over all folds."""
    variants = payload["variants"]
    accuracies = {
        name: [np.nan if a is None else a for a in v["accuracy_per_fold"]]
        for name, v in variants.items()
    }
    k = payload["num_folds"]
    lines = [
        f"# Cross-validation: {payload['dataset']} ({payload['config']}), {k} subject-independent "
        "folds",
        "",
        "Recognition accuracy (%) on the test fold's peak frames; mean and std (population, "
        "ddof=0) over the folds; n/a = fold not finished.",
        "",
        figures.results_table_markdown(accuracies, ddof=STD_DDOF).rstrip(),
        "",
        "Synthesis (Table III: generated vs real face of the same subject and expression) and "
        "identity verification (Table IV: real vs generated pairs, LightCNN-29 cosine "
        "similarity, threshold from the training fold); mean ± std over the folds.",
        "",
        f"Expression edits judged by {payload.get('judge') or 'no judge'} (edit accuracy: "
        "G(x, b) labelled b over every test face and other class b; judge accuracy on the real "
        "test faces is its ceiling; Spearman and gap of p_b over intensities 0..1) and the "
        "pixel logistic-regression probe on the same folds.",
        "",
        "| variant | PSNR (dB) | SSIM | verification rate (%) | edit accuracy (%) | "
        "judge accuracy, real (%) | intensity Spearman | intensity gap | linear probe (%) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    scales = {"edit_accuracy": (100.0, 1), "judge_accuracy_real": (100.0, 1),
              "intensity_spearman": (1.0, 2), "intensity_gap": (1.0, 3),
              "linear_probe_accuracy": (100.0, 1)}  # fmt: skip
    for name, v in variants.items():
        cells = [
            _fmt(v["psnr_mean"], v["psnr_std"], 1.0, 2),
            _fmt(v["ssim_mean"], v["ssim_std"], 1.0, 3),
            _fmt(v["verification_rate_mean"], v["verification_rate_std"], 100.0, 2),
        ]
        cells += [_fmt(v.get(f"{m}_mean"), v.get(f"{m}_std"), *scales[m]) for m in judge.METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    poses = sorted({yaw for v in variants.values() for yaw in v.get("poses", [])})
    if poses:
        lines += [
            "",
            "Accuracy (%) per pose (yaw in degrees) on the test fold's faces of that pose; "
            "mean ± std over the folds.",
            "",
            "| variant | " + " | ".join(f"{yaw:+d}°" for yaw in poses) + " |",
            "|---|" + "---:|" * len(poses),
        ]
        for name, v in variants.items():
            cells = [
                _fmt(v.get(f"{POSE_PREFIX}{y}_mean"), v.get(f"{POSE_PREFIX}{y}_std"), 100.0, 1)
                for y in poses
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    names = payload["class_names"]
    lines += [
        "",
        "Per-class accuracy (%) from the confusion matrix summed over the finished folds.",
        "",
        "| variant | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for name, v in variants.items():
        cells = ["n/a" if a is None else f"{100 * a:.1f}" for a in v["per_class_accuracy"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tsne_order(names: Sequence[str], first: Sequence[str] = ()) -> list[str]:
    """Panel order of the t-SNE figure: the method's `tsne_first` variants side by side when all
    of them ran, then the others."""
    first = list(first)
    if first and all(n in names for n in first):
        return first + [n for n in names if n not in first]
    return list(names)


def _features(workdir: str, variant: str, fold: int) -> dict[str, np.ndarray]:
    path = os.path.join(fold_dir(workdir, variant, fold), FEATURES)
    if not os.path.exists(path):
        return {}
    with np.load(path) as data:
        return dict(data)


def _write_figures(workdir: str, payload: dict, tsne_first: Sequence[str] = ()) -> list[str]:
    """figures/: confusion matrix per variant (summed over folds), t-SNE of real vs synthetic
    Rext features (Fig. 9, one fold), and per variant the sample figures and training curves
    of its first finished fold. Returns the written paths."""
    folder = os.path.join(workdir, FIGURES)
    os.makedirs(folder, exist_ok=True)
    names = payload["class_names"]
    written = []
    with_features = {}
    for name, v in payload["variants"].items():
        path = os.path.join(folder, f"confusion_{name}.png")
        title = f"{name}: {len(v['folds_finished'])} of {payload['num_folds']} folds"
        figures.plot_confusion_matrix(path, np.asarray(v["confusion_matrix"]), names, title)
        written.append(path)
        first = fold_dir(workdir, name, v["folds_finished"][0])
        sources = [os.path.join(first, "samples", f) for f in SAMPLE_FIGURES]
        for src in [*sources, os.path.join(first, CURVES)]:
            if os.path.exists(src):
                dst = os.path.join(folder, name, os.path.basename(src))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copyfile(src, dst)
                written.append(dst)
        with_features[name] = [
            f for f in v["folds_finished"] if "synthetic_features" in _features(workdir, name, f)
        ]
    panels_of = tsne_order([n for n, folds in with_features.items() if folds], tsne_first)
    common = set.intersection(*(set(with_features[n]) for n in panels_of)) if panels_of else set()
    if common:
        fold = min(common)
        panels = {}
        for name in panels_of:
            data = _features(workdir, name, fold)
            feats = np.concatenate([data["real_features"], data["synthetic_features"]])
            labels = np.concatenate([data["real_labels"], data["synthetic_labels"]])
            synthetic = np.arange(len(labels)) >= len(data["real_labels"])
            panels[f"{name} (fold {fold})"] = (feats, labels, synthetic)
        path = os.path.join(folder, "tsne.png")
        figures.plot_tsne(path, panels, names)
        written.append(path)
    return written


def _judge_name(collected: dict[str, dict[int, dict]]) -> str | None:
    """'fer2013 (excluded: contempt)', or 'oracle (intensity Spearman 0.98 on the renderer's own
    faces)' with the oracle's ceiling, from the first fold result that has a judge."""
    for results in collected.values():
        for r in results.values():
            found = r.get("judge") or {}
            if found.get("judge"):
                notes = []
                if found.get("judge_excluded_classes"):
                    notes.append(f"excluded: {', '.join(found['judge_excluded_classes'])}")
                ceiling = (found.get("judge_info") or {}).get("ramp_intensity_spearman")
                if ceiling is not None:
                    notes.append(f"intensity Spearman {ceiling:.2f} on the renderer's own faces")
                return found["judge"] + (f" ({'; '.join(notes)})" if notes else "")
    return None


def aggregate(
    config: ml_collections.ConfigDict, workdir: str, variants: Sequence[str] | None = None
) -> dict:
    """Collects the finished folds in `workdir` (written by any process) into cv_results.json,
    cv_results.md and figures/. `variants` default: every variant with a finished fold.

    Raises:
      FileNotFoundError: no finished fold of any requested variant.
      ValueError: a fold result from a protocol with another fold count.
    """
    num_folds = int(config.data.num_folds)
    variants = (
        list(variants)
        if variants
        else finished_variants(workdir, list(methods.of(config).variants))
    )
    collected: dict[str, dict[int, dict]] = {}
    for name in variants:
        results = {}
        for f in range(num_folds):
            path = os.path.join(fold_dir(workdir, name, f), FOLD_RESULT)
            if os.path.exists(path):
                results[f] = _read_json(path)
                if results[f]["num_folds"] != num_folds:
                    raise ValueError(
                        f"{path} is a fold of a {results[f]['num_folds']}-fold protocol; the "
                        f"config has data.num_folds={num_folds}."
                    )
        if results:
            collected[name] = results
        else:
            logging.warning("CV aggregate: no finished fold of %s in %s.", name, workdir)
    if not collected:
        raise FileNotFoundError(f"No finished folds ({FOLD_RESULT}) of {variants} in {workdir}.")
    first = next(iter(next(iter(collected.values())).values()))
    payload = {
        "config": config.get("name", ""),
        "dataset": config.data.name,
        "num_folds": num_folds,
        "class_names": first["class_names"],
        "std_ddof": STD_DDOF,
        "judge": _judge_name(collected),
        "variants": {name: _variant_summary(r, num_folds) for name, r in collected.items()},
    }
    written = _write_figures(workdir, payload, methods.of(config).tsne_first)
    payload["figures"] = [os.path.relpath(p, workdir) for p in written]
    write_json(os.path.join(workdir, CV_JSON), payload)
    markdown = results_markdown(payload)
    atomic_write(os.path.join(workdir, CV_MARKDOWN), lambda tmp: _write_text(tmp, markdown))
    return payload
