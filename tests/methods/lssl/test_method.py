"""Method `lssl` through the shared machinery: configs, registration, the editor's side input, a
whole run (parser, G and D, recognizer, judge metrics, samples) and its bit-identical resume."""

import importlib
import json
import os
import re

import numpy as np
import pytest

from configs import default
from fergan import methods
from fergan.data import face_renderer
from fergan.experiments import checks, train
from fergan.experiments.config import resolve_config
from fergan.methods.lssl import evaluation as lssl_evaluation
from fergan.methods.lssl import step as lssl_step
from tests.methods.lssl.test_step import SIZE, tiny_model
from tests.program.helpers import assert_resume_is_bit_identical, tiny_config

DATABASE_CONFIGS = (
    "ck_plus",
    "image_folder",
    "mmi",
    "multipie",
    "oulu_casia",
    "synthetic_faces",
    "tfd",
)


@pytest.mark.parametrize("name", [*DATABASE_CONFIGS, "demo", "demo_lssl"])
def test_every_config_runs_lssl_as_a_variant(name):
    get_config = importlib.import_module(f"configs.{name}").get_config
    config = get_config("LSSL")
    assert (config.method, config.variant) == ("lssl", "LSSL")
    checks.check_config(config)  # Every key, before any data or parser exists.
    if name != "demo_lssl":
        assert get_config("BASELINE").method == "fesr"  # BASELINE keeps the config's method.


def test_variant_table_of_the_configs_matches_the_registry():
    lssl = methods.get("lssl")
    named = {k for k, v in default.METHOD_OF_VARIANT.items() if v == "lssl"}
    assert named == set(lssl.variants) - {"BASELINE"}
    assert "BASELINE" in methods.get("fesr").variants


def test_config_errors_name_their_key():
    config = tiny_config("LSSL")
    config.lssl.recognizer = "vgg"
    with pytest.raises(ValueError, match=re.escape("lssl.recognizer='vgg'")):
        checks.check_config(config)
    config = tiny_config("LSSL")
    config.recognizer.trunk = "finetune"
    with pytest.raises(ValueError, match=re.escape("recognizer.trunk='finetune'")):
        checks.check_config(config)
    config = tiny_config("LSSL")
    config.lssl.id_label = "both"
    with pytest.raises(ValueError, match=re.escape("lssl.id_label='both'")):
        checks.check_config(config)


def _faces(n: int, seed: int = 0):
    """n rendered faces at SIZE px (grey) in [-1, 1] with their landmarks [n, 68, 2]."""
    rng = np.random.default_rng(seed)
    faces, marks = [], []
    for i in range(n):
        identity = face_renderer.sample_identity(rng)
        image = face_renderer.render_face(identity, i % 7, 1.0, SIZE)
        faces.append(2.0 * image[..., None] - 1.0)
        marks.append(face_renderer.face_landmarks(identity, i % 7, 1.0, SIZE))
    return np.stack(faces), np.stack(marks).astype(np.float32)


def test_editor_renders_with_each_face_landmark_heatmap():
    model = tiny_model("LSSL")
    state = lssl_step.init_state(model, 0)
    edit = lssl_evaluation.editor(model, state)
    x, marks = _faces(3)
    labels = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="landmarks"):
        edit(x, labels, np.ones(3))
    out = edit(x, labels, np.ones(3), landmarks=marks)
    assert out.shape == x.shape and np.all(np.abs(out) <= 1.0)
    # The side image matters, and the intensity does not (G has none).
    moved = edit(x, labels, np.ones(3), landmarks=marks + 3.0)
    assert np.max(np.abs(moved - out)) > 1e-4
    np.testing.assert_array_equal(edit(x, labels, np.zeros(3), landmarks=marks), out)
    # LSSL-S reads the face alone; BASELINE has no editor.
    plain = tiny_model("LSSL-S")
    assert lssl_evaluation.editor(plain, lssl_step.init_state(plain, 0))(
        x, labels, np.ones(3)
    ).shape
    assert lssl_evaluation.editor(tiny_model("BASELINE"), None) is None


def lssl_config(data_dir: str, variant: str = "LSSL"):
    config = tiny_config(variant, data_dir)
    config.method = "lssl"
    config.lssl.epochs = 1.0  # 5 steps of G and D, then ceil(4 * 7 / 8) = 4 of the recognizer.
    config.lssl.n_critic = 2
    config.lssl.synthetic_per_class = 4
    config.train.checkpoint_every = 3
    config.parser = {"width": 4, "steps": 4, "train_subjects": 2, "test_subjects": 1, "views": 2}
    return config


@pytest.fixture(scope="module")
def lssl_run(data_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("lssl"))
    config = resolve_config(lssl_config(data_dir), workdir, "train")
    return workdir, config, train.train_and_evaluate(config, workdir)


def test_a_run_trains_both_stages_and_writes_its_results(lssl_run):
    workdir, config, summary = lssl_run
    assert summary["steps"] == 9 and summary["stage1_steps"] == 5
    assert os.path.isfile(config.lssl.parser_weights + ".json")  # Pretrained by `prepare`.
    with open(os.path.join(workdir, "summary.json")) as f:
        written = json.load(f)["eval"]
    assert 0.0 <= written["accuracy"] <= 1.0
    assert written["intensity_spearman"] is None  # G has no intensity.
    assert os.path.isfile(os.path.join(workdir, "samples", "expressions.png"))


def test_stopped_and_resumed_lssl_run_is_bit_identical(lssl_run, data_dir, tmp_path):
    workdir, config, _ = lssl_run
    # Stop inside stage 1, after the checkpoint at step 3; the resume crosses into stage 2.
    assert_resume_is_bit_identical(config, workdir, str(tmp_path), stop_after=4)
