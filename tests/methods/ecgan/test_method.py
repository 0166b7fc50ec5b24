"""Method `ecgan` through the shared machinery: configs, registration, the neutral-face editor
and Table 2's scores, a whole run (both stages, samples) and its bit-identical resume."""

import importlib
import json
import os
import re

import jax
import numpy as np
import pytest

from configs import default
from fergan import methods
from fergan.data import pipeline
from fergan.experiments import checks, train
from fergan.experiments.config import resolve_config
from tests.methods.lssl.test_method import DATABASE_CONFIGS
from tests.program.helpers import assert_resume_is_bit_identical, tiny_config


@pytest.mark.parametrize("name", [*DATABASE_CONFIGS, "demo", "demo_ecgan"])
def test_every_config_runs_ecgan_as_a_variant(name):
    config = importlib.import_module(f"configs.{name}").get_config("ECGAN")
    assert (config.method, config.variant) == ("ecgan", "ECGAN")
    assert config.data.neutral_first_frames  # Selected with the method.
    if name == "multipie":  # Single images: no first frames to take.
        with pytest.raises(ValueError, match=re.escape("multipie holds single images")):
            checks.check_config(config)
        return
    if config.data.name == "expression_folder" and not config.data.sequence_regex:
        # Single images (these configs' default) have no neutral first frames.
        with pytest.raises(ValueError, match=re.escape("only with data.sequence_regex")):
            checks.check_config(config)
        config.data.sequence_regex = r"_(?P<sequence>\d+)_(?P<frame>\d+)"
    checks.check_config(config)


def test_paper_config_keeps_the_papers_schedule():
    config = importlib.import_module("configs.ecgan_paper").get_config()
    assert (config.method, config.train.batch_size, config.ecgan.epochs) == ("ecgan", 1, 200.0)
    assert (config.ecgan.learning_rate, config.optim.b1) == (2e-4, 0.5)
    checks.check_config(config)


def test_variant_table_of_the_configs_matches_the_registry():
    ecgan = {k for k, v in default.METHOD_OF_VARIANT.items() if v == "ecgan"}
    assert ecgan == set(methods.get("ecgan").variants)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("ecgan.mask_loss", "hull", "ecgan.mask_loss='hull'"),
        ("ecgan.generator", "unet", "ecgan.generator='unet'"),
        ("ecgan.epochs", 0.0, "ecgan.epochs=0.0"),
        ("recognizer.trunk", "finetune", "recognizer.trunk='finetune'"),
        ("data.neutral_first_frames", False, "data.neutral_first_frames=True"),
    ],
)
def test_config_errors_name_their_key(key, value, message):
    config = tiny_config("ECGAN")
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        checks.check_config(config)


def ecgan_config(data_dir: str, generator: str = "resnet"):
    config = tiny_config("ECGAN", data_dir)
    config.ecgan.epochs = 1.0  # 5 steps of the GAN, then 5 of the recognizers.
    config.ecgan.recognizer_epochs = 1.0
    config.ecgan.generator = generator
    config.train.checkpoint_every = 3
    return config


def test_fesr_generator_option_builds_and_steps(data_dir):
    config = ecgan_config(data_dir, "fesr")
    method = methods.of(config)
    model = method.build(config, 5)
    state = jax.eval_shape(lambda: method.init_state(model, 0))
    size, c = model.image_size, model.channels
    zeros = np.zeros((8, size, size, c), np.float32)
    batch = {"x": zeros, "y": np.zeros(8, np.int32), "mask": zeros[..., :1],
             "x_neutral": zeros, "mask_neutral": zeros[..., :1]}  # fmt: skip
    new, metrics = jax.eval_shape(method.iterations(model)[0][2], state, batch)
    assert "loss/cycle" in metrics and new.g_xy.params.keys() == state.g_xy.params.keys()


@pytest.fixture(scope="module")
def ecgan_run(data_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("ecgan"))
    config = resolve_config(ecgan_config(data_dir), workdir, "train")
    return workdir, config, train.train_and_evaluate(config, workdir)


def test_a_run_trains_both_stages_and_reports_table_two(ecgan_run):
    workdir, _, summary = ecgan_run
    assert summary["steps"] == 10 and summary["stage1_steps"] == 5
    with open(os.path.join(workdir, "summary.json")) as f:
        written = json.load(f)["eval"]
    # Table 2's three rows: r (original + generated), r_original, r_original on G_XY's faces.
    for name in ("accuracy", "original_accuracy", "generated_accuracy", "vgg_score"):
        assert 0.0 <= written[name] <= 1.0, name
    assert written["intensity_spearman"] is None  # G has no intensity.
    assert os.path.isfile(os.path.join(workdir, "samples", "expressions.png"))


def test_editor_starts_from_the_held_out_neutral_faces(ecgan_run):
    workdir, config, _ = ecgan_run
    setup = train.Setup(config, workdir)
    try:
        state = setup.checkpoints.restore(setup.initial_state)[0]
        test = pipeline.eval_arrays(setup.datasets, "test")
        sources = setup.edit_sources(test)
        assert (sources["y"] == -1).all() and len(sources["x"]) == len(setup.datasets.test_neutral)
        assert set(sources["subject"]) == set(test["subject"])
        edit = setup.editor(state)
        labels = np.arange(len(sources["x"])) % setup.model.num_classes
        out = edit(sources["x"], labels, np.ones(len(labels)))
        assert out.shape == sources["x"].shape and np.abs(out).max() <= 1.0
        other = edit(sources["x"], (labels + 1) % setup.model.num_classes, np.ones(len(labels)))
        assert np.abs(out - other).max() > 1e-5  # The expression vector reaches G_XY.
    finally:
        setup.checkpoints.close()


def test_stopped_and_resumed_ecgan_run_is_bit_identical(ecgan_run, tmp_path):
    workdir, config, _ = ecgan_run
    # Stop inside stage 1, after the checkpoint at step 3; the resume crosses into stage 2.
    assert_resume_is_bit_identical(config, workdir, str(tmp_path), stop_after=4)
