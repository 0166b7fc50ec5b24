"""identity_features: F_id of faces in [-1, 1], batched, equal to one direct forward pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fergan.identity.features import identity_features, trunk_outputs
from fergan.models import LightCNN29, to_lightcnn_input


@pytest.fixture(scope="module")
def model_params():
    model = LightCNN29(0.25, 5)
    params = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 32, 32, 1)))["params"]
    return model, params


@pytest.mark.parametrize("channels", [1, 3])
def test_matches_direct_pass_over_uneven_batches(model_params, channels):
    model, params = model_params
    faces = np.random.default_rng(channels).uniform(-1, 1, (11, 32, 32, channels))
    faces = faces.astype(np.float32)
    got = identity_features(model, params, faces, batch=4)  # 4 + 4 + 3 (padded).
    want = model.apply(
        {"params": params}, to_lightcnn_input(jnp.asarray(faces)), method=model.identity_feature
    )
    assert got.shape == (11, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)


def test_no_faces_gives_no_rows(model_params):
    model, params = model_params
    assert identity_features(model, params, np.zeros((0, 32, 32, 1), np.float32)).shape == (0, 64)


def test_trunk_outputs_match_direct_pass(model_params):
    model, params = model_params
    faces = np.random.default_rng(3).uniform(-1, 1, (7, 32, 32, 1)).astype(np.float32)
    got = trunk_outputs(model, params, faces, batch=4)  # 4 + 3 (padded).
    want = model.apply(
        {"params": params}, to_lightcnn_input(jnp.asarray(faces)), method=model.trunk
    )
    assert got.shape == (7, 4, 4, 48) and got.dtype == np.float32  # 192 * 0.25 channels at S/8.
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)
