"""ensure_weights: which identity weights a run loads, decided without touching the config."""

from __future__ import annotations

import os

import numpy as np
import pytest

from configs import default
from fergan.identity import ensure_weights, pretrain
from fergan.identity.weights import save_identity_params


def _config(pretrain_flag: bool = False, weights: str = ""):
    # The sizes of test_pretrain; training itself is replaced below, so they only need to be valid.
    config = default.get_config()
    config.model.image_size = 32
    config.model.width = 0.25
    config.identity.pretrain = pretrain_flag
    config.identity.weights = weights
    return config


@pytest.fixture
def trainings(monkeypatch):
    """Replaces pretrain_identity by a quick save of a tiny tree; lists the folders it ran in."""
    calls = []

    def fake(config, folder):
        calls.append(folder)
        path = os.path.join(os.path.abspath(folder), "identity_weights")
        save_identity_params(path, {"fc": {"kernel": np.ones((2, 2))}}, overwrite=True)
        return {"weights": path}

    monkeypatch.setattr(pretrain, "pretrain_identity", fake)
    return calls


def test_unset_means_untrained(tmp_path, trainings):
    assert ensure_weights(_config(), os.fspath(tmp_path)) == ""
    assert trainings == []


def test_weights_resolved_relative_to_folder(tmp_path, trainings):
    (tmp_path / "mine").mkdir()
    config = _config(pretrain_flag=True, weights="mine")  # weights win over pretrain.
    before = config.to_json()
    assert ensure_weights(config, os.fspath(tmp_path)) == os.fspath(tmp_path / "mine")
    assert config.to_json() == before and trainings == []
    with pytest.raises(FileNotFoundError, match=r"identity\.weights=absent"):
        ensure_weights(_config(weights="absent"), os.fspath(tmp_path))


def test_pretrain_trains_once_then_reuses(tmp_path, trainings):
    folder = os.fspath(tmp_path)
    config = _config(pretrain_flag=True)
    before = config.to_json()
    path = ensure_weights(config, folder)
    assert path == os.path.join(folder, "identity_weights") and os.path.isabs(path)
    assert trainings == [folder]
    assert ensure_weights(config, folder) == path
    assert trainings == [folder]  # Reused, not trained again.
    assert config.to_json() == before  # Never written into.


def test_pretrain_retrains_an_unfinished_folder(tmp_path, trainings):
    (tmp_path / "identity_weights" / "params").mkdir(parents=True)  # No meta item: unfinished.
    path = ensure_weights(_config(pretrain_flag=True), os.fspath(tmp_path))
    assert trainings == [os.fspath(tmp_path)]
    assert os.path.isdir(os.path.join(path, "meta"))
