"""--mode pretrain_identity on the synthetic set: a tiny run learns identity features."""

from __future__ import annotations

import json
import math
import os

import pytest

from configs import default
from fergan.identity import (
    ensure_weights,
    identity_network,
    identity_params_for,
    load_identity_params,
    pretrain,
    read_identity_metadata,
)
from fergan.identity.pretrain import pretrain_identity


def test_tiny_pretrain_generalises_to_held_out_subjects(tmp_path, monkeypatch):
    config = default.get_config()
    config.model.image_size = 32
    config.model.width = 0.25
    # 10 training and 10 held-out subjects; strong nuisance so that raw features are imperfect.
    config.data.num_subjects = 20
    config.data.num_folds = 2
    config.data.synthetic_nuisance = 1.0
    config.identity.pretrain_steps = 120
    config.identity.pretrain_batch_size = 32
    config.identity.pretrain_learning_rate = 1e-3
    config.identity.pretrain_log_every = 40
    workdir = os.fspath(tmp_path)
    before = config.to_json()

    out = pretrain_identity(config, workdir)

    assert out["steps"] == 120 and out["weights"] == os.path.join(workdir, "identity_weights")
    assert out["num_train_subjects"] == 10 and out["num_test_subjects"] == 10
    assert out["train_accuracy"] > 0.9
    # Well above chance on unseen subjects, and better than the same network untrained.
    assert out["verification_auc"] > 0.9, out
    assert out["verification_auc"] > out["initial_verification_auc"] + 0.02, out
    assert out["rank1_accuracy"] > 0.5
    assert os.path.isdir(os.path.join(workdir, "tfds"))  # data.data_dir '' -> <workdir>/tfds.

    with open(os.path.join(workdir, "identity_weights.json")) as f:
        summary = json.load(f)
    assert math.isclose(summary["verification_auc"], out["verification_auc"])
    meta = read_identity_metadata(out["weights"])
    assert meta["num_classes"] == 10 and meta["source"] == "pretrain_identity"

    # The config is only read; identity.pretrain then reuses the finished weights (no second
    # training), and they load for the run's identity network.
    assert config.to_json() == before
    config.identity.pretrain = True
    monkeypatch.setattr(pretrain, "pretrain_identity", lambda *a: pytest.fail("trained again"))
    config.identity.weights = ensure_weights(config, workdir)
    assert config.identity.weights == out["weights"]
    params = identity_params_for(config)
    assert "fc2" not in params
    assert (
        params["fc"]["kernel"].shape
        == load_identity_params(out["weights"], identity_network(config), 32)["fc"]["kernel"].shape
    )
