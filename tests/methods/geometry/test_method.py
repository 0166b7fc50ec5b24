"""Method `geometry` through the shared machinery: configs, registration, the template bank
(training subjects only), a whole multi-pose run (both stages, per-pose accuracy, samples) and
its bit-identical resume, batch-norm statistics included."""

import importlib
import json
import os
import re

import jax
import numpy as np
import pytest

from configs import default
from fergan import methods
from fergan.config_utils import editable_copy
from fergan.data import pipeline
from fergan.experiments import checks, train
from fergan.experiments.config import resolve_config
from fergan.methods.geometry import model as geo_model
from fergan.methods.geometry.templates import select_templates
from tests.methods.lssl.test_method import DATABASE_CONFIGS
from tests.program.helpers import assert_resume_is_bit_identical, tiny_config

POSES = (-15, 0, 15)


@pytest.mark.parametrize("name", [*DATABASE_CONFIGS, "demo", "demo_geometry"])
def test_every_config_runs_geometry_as_a_variant(name):
    config = importlib.import_module(f"configs.{name}").get_config("GEO-No_LS")
    assert (config.method, config.variant) == ("geometry", "GEO-No_LS")
    assert config.train.batch_size == 36  # The method's batch, set with it.
    checks.check_config(config)


@pytest.mark.parametrize("method", ["geometry", "fesr"])
def test_variant_table_of_the_configs_matches_the_registry(method):
    named = {k for k, v in default.METHOD_OF_VARIANT.items() if v == method}
    assert named | {"BASELINE"} == set(methods.get(method).variants)


def test_demo_geometry_runs_fesr_jl_with_the_iterations_of_the_two_stages():
    from configs import demo_geometry

    geo, fesr = demo_geometry.get_config("GEO"), demo_geometry.get_config("FESR_JL")
    assert (fesr.method, fesr.train.batch_size) == ("fesr", geo.train.batch_size)
    assert fesr.train.pre_epochs == geo.geometry.epochs
    assert fesr.train.max_epochs == geo.geometry.epochs + geo.geometry.synthetic_epochs
    assert fesr.data == geo.data
    checks.check_config(fesr)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("geometry.con_target", "mean", "geometry.con_target='mean'"),
        ("geometry.epochs", 0.0, "geometry.epochs=0.0 must be > 0"),
        ("geometry.rho", 1.0, "geometry.rho=1.0"),
        ("geometry.synthetic_per_real", 0, "geometry.synthetic_per_real=0"),
        ("model.image_size", 48, "model.image_size=48"),
        ("recognizer.trunk", "finetune", "recognizer.trunk='finetune'"),
    ],
)
def test_config_errors_name_their_key(key, value, message):
    config = tiny_config("GEO")
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        checks.check_config(config)


def geometry_config(data_dir: str):
    config = tiny_config("GEO", data_dir)
    config.train.batch_size = 8
    config.data.poses = ",".join(map(str, POSES))
    # 126 training frames, 15 steps per epoch: 6 end-to-end steps, then 4 of the template stage.
    config.geometry.epochs = 0.4
    config.geometry.synthetic_epochs = 0.27
    config.geometry.synthetic_per_real = 2
    config.train.checkpoint_every = 4
    return config


@pytest.fixture(scope="module")
def geometry_run(data_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("geometry"))
    config = resolve_config(geometry_config(data_dir), workdir, "train")
    return workdir, config, train.train_and_evaluate(config, workdir)


def test_a_run_trains_both_stages_and_reports_per_pose(geometry_run):
    workdir, _, summary = geometry_run
    assert summary["steps"] == 10 and summary["stage1_steps"] == 6
    with open(os.path.join(workdir, "summary.json")) as f:
        written = json.load(f)["eval"]
    for pose in POSES:
        assert 0.0 <= written[f"accuracy_pose_{pose}"] <= 1.0, pose
    assert written["intensity_spearman"] is None  # G has no intensity.
    assert os.path.isfile(os.path.join(workdir, "samples", "targets.png"))


def test_template_bank_holds_training_subjects_only_and_covers_every_cell(geometry_run):
    workdir, config, _ = geometry_run
    setup = train.Setup(config, workdir)
    try:
        bank, data = setup.model.templates, setup.datasets
        assert len(bank) == config.geometry.templates
        assert set(bank.subjects) <= set(data.train.subjects.tolist())
        assert not set(bank.subjects) & set(data.test.subjects.tolist())
        cells = set(zip(data.train.poses.tolist(), data.train.labels.tolist(), strict=True))
        assert set(zip(bank.poses, bank.labels, strict=True)) == cells  # 60 >= 21 cells.
        assert np.abs(bank.landmark_array()).max() < 1.5  # Landmarks in [-1, 1] units.
        # The draw is a function of the seed.
        again = select_templates(data.train, len(bank), int(config.seed))
        assert again == bank and select_templates(data.train, len(bank), 1) != bank
        # A bank too small to hold every class is refused before training, naming the key.
        small = editable_copy(config)
        small.geometry.templates = 1
        with pytest.raises(ValueError, match=re.escape("geometry.templates=1: no template")):
            geo_model.attach_data(setup.model, small, data)
        # The editor renders the target expression's template: labels change its output.
        state = setup.checkpoints.restore(setup.initial_state)[0]
        test = pipeline.eval_arrays(data, "test")
        edit = setup.editor(state)
        labels = np.arange(len(test["x"])) % setup.model.num_classes
        out = edit(test["x"], labels, np.ones(len(labels)))
        other = edit(test["x"], (labels + 1) % setup.model.num_classes, np.ones(len(labels)))
        # (10 steps from N(0, 0.02) weights leave G's output nearly constant: any change counts.)
        assert out.shape == test["x"].shape and not np.array_equal(out, other)
    finally:
        setup.checkpoints.close()


def test_stopped_and_resumed_geometry_run_is_bit_identical(geometry_run, tmp_path):
    workdir, config, _ = geometry_run
    # Stop inside stage 1 after the checkpoint at step 4; the resume crosses into stage 2.
    state = assert_resume_is_bit_identical(config, workdir, str(tmp_path), stop_after=5)
    assert jax.tree.leaves(state.e_stats)  # Batch-norm statistics are checkpointed and compared.
