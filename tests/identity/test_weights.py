"""Identity weights on disk: round trip, shape checks against the config, the untrained warning."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from fergan.identity import weights
from fergan.identity.network import identity_network
from fergan.methods.fesr.networks import build_networks
from fergan.methods.fesr.state import init_state
from fergan.models import LightCNN29


def _config(image_size=32, width=0.25):
    config = default.get_config()
    config.model.image_size = image_size
    config.model.width = width
    return config


def _load(path: str, config) -> dict:
    """load_identity_params for the identity network `config` describes."""
    return weights.load_identity_params(path, identity_network(config), config.model.image_size)


def _random_params(model: LightCNN29, size: int) -> dict:
    """A full tree (fc2 included) of random numpy arrays, without running init."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 1)))
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes["params"])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    params = _random_params(LightCNN29(0.25, 5), 32)
    path = os.fspath(tmp_path_factory.mktemp("w") / "identity_weights")
    meta = {"version": 2, "width": 0.25, "image_size": 32, "num_classes": 5}
    return weights.save_identity_params(path, params, meta), params


def test_round_trip_drops_fc2_and_fits_init_state(saved):
    path, params = saved
    nets = build_networks(_config().model)
    loaded = _load(path, _config())
    assert set(loaded) == set(params) - {"fc2"}
    jax.tree.map(np.testing.assert_array_equal, loaded, {k: params[k] for k in loaded})
    # Same tree as the one init_state would draw, and init_state accepts it.
    state = jax.eval_shape(lambda: init_state(nets, 0, 0.5, 0.999, identity_params=loaded))
    fresh = jax.eval_shape(lambda: init_state(nets, 0, 0.5, 0.999))
    assert jax.tree.structure(state.identity) == jax.tree.structure(fresh.identity)
    assert weights.read_identity_metadata(path)["format"] == weights.FORMAT


def test_wrong_width_names_key_path_and_shapes(saved):
    path, _ = saved
    with pytest.raises(ValueError) as e:
        _load(path, _config(width=0.5))
    msg = str(e.value)
    assert f"identity.weights={path}" in msg
    assert "conv1/filter/kernel has shape (5, 5, 1, 24) in the file but (5, 5, 1, 48)" in msg
    assert "model.width=0.5" in msg


def test_wrong_image_size_names_fc(saved):
    path, _ = saved
    with pytest.raises(
        ValueError, match=r"fc/kernel has shape \(128, 64\) in the file but \(512, 64\)"
    ):
        _load(path, _config(image_size=64))


def test_version_mismatch_and_bad_paths(tmp_path):
    v1 = _random_params(LightCNN29(0.25, 5, version=1), 32)
    path = weights.save_identity_params(os.fspath(tmp_path / "v1"), v1, {"version": 1})
    config = _config()
    with pytest.raises(ValueError, match=r"identity\.version=1"):
        _load(path, config)
    with pytest.raises(FileNotFoundError, match=r"identity\.weights"):
        _load(os.fspath(tmp_path / "absent"), config)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not a fergan identity-weights directory"):
        _load(os.fspath(tmp_path / "plain"), config)
    with pytest.raises(FileExistsError, match="already exists"):
        weights.save_identity_params(path, v1)


def test_identity_params_for(saved, monkeypatch, tmp_path):
    path, _ = saved
    warnings = []
    monkeypatch.setattr(weights.logging, "warning", lambda msg, *a: warnings.append(msg % a))
    monkeypatch.setattr(weights, "_warned_untrained", False)
    config = _config()
    assert weights.identity_params_for(config) is None
    assert weights.identity_params_for(config, workdir=os.fspath(tmp_path)) is None
    assert len(warnings) == 1  # Once per process.
    assert "UNTRAINED" in warnings[0] and "NOT THE PAPER'S" in warnings[0]
    assert "convert_lightcnn" in warnings[0] and "pretrain_identity" in warnings[0]

    # A relative identity.weights is found in the workdir.
    config.identity.weights = os.path.basename(path)
    loaded = weights.identity_params_for(config, workdir=os.path.dirname(path))
    assert "fc2" not in loaded and loaded["conv1"]["filter"]["kernel"].shape == (5, 5, 1, 24)
    config.identity.weights = "no/such/weights"
    with pytest.raises(FileNotFoundError, match=r"identity\.weights=no/such/weights"):
        weights.identity_params_for(config, workdir=os.fspath(tmp_path))


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
@pytest.mark.parametrize("version", [1, 2])
def test_identity_network_is_the_runs(dtype_name, version):
    config = _config()
    config.model.compute_dtype = dtype_name
    config.identity.version = version
    nets = build_networks(config.model, lightcnn_version=version)
    assert identity_network(config) == nets.identity
    config.model.compute_dtype = "float16"
    with pytest.raises(ValueError, match=r"model\.compute_dtype='float16'"):
        identity_network(config)


def test_expected_shapes_are_init_states():
    config = _config()
    nets = build_networks(config.model)
    fresh = jax.eval_shape(lambda: init_state(nets, 0, 0.5, 0.999))
    assert weights.expected_identity_shapes(identity_network(config), 32) == weights.flat_shapes(
        fresh.identity
    )
