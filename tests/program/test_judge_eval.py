"""The judge metrics reach summary.json's `eval` and the cross-validation tables."""

import json
import os

import numpy as np
import pytest

from fergan.data import pipeline
from fergan.evaluation import edit_metrics, judge
from fergan.experiments import cross_validate as cv
from fergan.experiments import train
from tests.program.helpers import tiny_config


def test_training_summary_holds_every_judge_metric(tmp_path):
    config = tiny_config("FESR_JL", data_dir=str(tmp_path / "tfds"))
    config.judge.kind = "auto"  # synthetic_faces: the oracle.
    config.judge.oracle_subjects = 8
    config.judge.oracle_steps = 20
    summary = train.train_and_evaluate(config, str(tmp_path / "run"))
    with open(tmp_path / "run" / "summary.json") as f:
        on_disk = json.load(f)["eval"]
    assert on_disk == json.loads(json.dumps(summary["eval"]))
    for name in judge.METRICS:
        assert isinstance(on_disk[name], float), name
    assert on_disk["judge"] == "oracle" and on_disk["judge_excluded_classes"] == []
    assert os.path.isdir(on_disk["judge_info"]["folder"])  # Cached under the data dir.
    assert on_disk["judge_info"]["folder"].startswith(str(tmp_path / "tfds" / "judges"))
    for fact in judge.ORACLE_FACTS:  # Its accuracy and intensity ceiling travel with the run.
        assert isinstance(on_disk["judge_info"][fact], float), fact
    datasets = pipeline.build_datasets(config, str(tmp_path / "tfds"))
    per_class = on_disk["intensity_spearman_per_class"]
    assert list(per_class) == list(datasets.class_names)
    # Every class has the same faces, so the classes' mean is the overall Spearman.
    assert np.mean(list(per_class.values())) == pytest.approx(on_disk["intensity_spearman"])
    # The probe is the pixel logistic regression on this run's own training and test faces.
    train_faces = pipeline.eval_arrays(datasets, "train")
    test_faces = pipeline.eval_arrays(datasets, "test")
    expected = edit_metrics.linear_probe_accuracy(
        train_faces["x"], train_faces["y"], test_faces["x"], test_faces["y"]
    )
    assert on_disk["linear_probe_accuracy"] == pytest.approx(expected)


def _fold(fold, edit, probe):
    cm = np.eye(7, dtype=int)
    return {
        "accuracy": 1.0,
        "confusion_matrix": cm.tolist(),
        "synthesis": {"psnr": 20.0, "ssim": 0.5},
        "verification": {"rate": 0.9},
        "judge": {
            "edit_accuracy": edit,
            "judge_accuracy_real": 0.9,
            "intensity_spearman": 0.5,
            "intensity_gap": 0.25,
            "linear_probe_accuracy": probe,
            "judge": "fer2013",
            "judge_excluded_classes": ["contempt"],
        },
    }


def test_cv_tables_show_the_judge_metrics_beside_psnr_and_ssim():
    results = {0: _fold(0, 0.6, 0.7), 1: _fold(1, 0.8, 0.5)}
    summary = cv._variant_summary(results, num_folds=3)
    assert summary["edit_accuracy_per_fold"] == [0.6, 0.8, None]
    assert summary["edit_accuracy_mean"] == pytest.approx(0.7)
    assert summary["edit_accuracy_std"] == pytest.approx(0.1)
    assert summary["linear_probe_accuracy_mean"] == pytest.approx(0.6)
    payload = {
        "dataset": "ck_plus",
        "config": "ck_plus",
        "num_folds": 3,
        "class_names": [str(k) for k in range(7)],
        "judge": cv._judge_name({"FESR_JL": results}),
        "variants": {"FESR_JL": summary},
    }
    text = cv.results_markdown(payload)
    assert "judged by fer2013 (excluded: contempt)" in text
    # The oracle's own ceiling (an exact editor's Spearman) is named beside it.
    oracle = {0: _fold(0, 0.6, 0.7)}
    oracle[0]["judge"] |= {
        "judge": "oracle",
        "judge_excluded_classes": [],
        "judge_info": {"ramp_intensity_spearman": 0.981},
    }
    name = cv._judge_name({"FESR_JL": oracle})
    assert name == "oracle (intensity Spearman 0.98 on the renderer's own faces)"
    header = next(line for line in text.splitlines() if "| PSNR (dB) |" in line)
    row = [line for line in text.splitlines() if line.startswith("| FESR_JL |")][1]
    cells = dict(zip(header.strip("|").split("|"), row.strip("|").split("|"), strict=True))
    cells = {k.strip(): v.strip() for k, v in cells.items()}
    assert cells["edit accuracy (%)"] == "70.0 ± 10.0"
    assert cells["judge accuracy, real (%)"] == "90.0 ± 0.0"
    assert cells["intensity Spearman"] == "0.50 ± 0.00"
    assert cells["intensity gap"] == "0.250 ± 0.000"
    assert cells["linear probe (%)"] == "60.0 ± 10.0"
    assert cells["PSNR (dB)"] == "20.00 ± 0.00"
