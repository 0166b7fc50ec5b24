"""Losses: WGAN-GP on a known critic, the expression code, RDBP gradients, safe distances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fergan import losses


def test_gradient_penalty_of_linear_critic_is_known():
    # D(x) = <w, x>: its input gradient is w for every sample, so GP = (||w|| - 1)^2 exactly.
    key = jax.random.PRNGKey(0)
    w = jax.random.normal(key, (8, 8, 3))
    critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
    real = jax.random.normal(jax.random.PRNGKey(1), (5, 8, 8, 3))
    fake = jax.random.normal(jax.random.PRNGKey(2), (5, 8, 8, 3))
    t = jax.random.uniform(jax.random.PRNGKey(3), (5,))
    expected = (jnp.linalg.norm(w) - 1.0) ** 2
    np.testing.assert_allclose(losses.gradient_penalty(critic, real, fake, t), expected, rtol=1e-5)


def test_gradient_penalty_is_per_sample():
    # A critic whose slope differs per sample position in the batch would be blurred by a mean
    # reduction; with the sum each sample keeps its own gradient norm.
    scales = jnp.asarray([1.0, 3.0])
    critic = lambda x: scales * jnp.sum(x, axis=(1, 2, 3))
    x = jnp.zeros((2, 2, 2, 1))
    gp = losses.gradient_penalty(critic, x, x, jnp.full((2,), 0.5))
    norms = scales * 2.0  # ||grad|| = scale * sqrt(4 pixels)
    np.testing.assert_allclose(gp, jnp.mean((norms - 1) ** 2), rtol=1e-6)


def test_expression_code_and_inference_form():
    y = jnp.asarray([0, 2])
    v = jnp.asarray([[0.3, 0.5, 0.9], [0.1, 0.2, 0.7]])
    u = losses.expression_code(y, v)
    np.testing.assert_allclose(u, [[0.3, -0.5, -0.9], [-0.1, -0.2, 0.7]], rtol=1e-6)
    u_inf = losses.inference_code(jnp.asarray([1]), jnp.asarray([0.8]), 3, off_value=0.5)
    np.testing.assert_allclose(u_inf, [[-0.5, 0.8, -0.5]], rtol=1e-6)


def test_euclidean_distance_has_finite_gradient_at_zero():
    a = jnp.ones((3, 4))
    grad = jax.grad(lambda b: jnp.sum(losses.euclidean_distance(a, b)))(a)
    assert np.all(np.isfinite(grad)) and np.all(grad == 0)
    np.testing.assert_allclose(losses.euclidean_distance(a, a + 3.0), [6.0, 6.0, 6.0])


def _rext(params, x):
    return jnp.tanh(x @ params["w"]) + params["b"]


@pytest.fixture
def rext_setup():
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    params = {"w": jax.random.normal(keys[0], (6, 4)), "b": jax.random.normal(keys[1], (4,))}
    x, x_pr, x_pf = (jax.random.normal(k, (5, 6)) for k in keys[2:])
    return params, x, x_pr, x_pf


def _real_synthetic_term(params, x, x_pf, rdbp):
    f_x = _rext(params, x)
    return losses.intra_class_terms(f_x, f_x, _rext(params, x_pf), rdbp=rdbp)["synthetic"]


def test_rdbp_sends_gradient_through_the_synthetic_branch_only(rext_setup):
    params, x, _, x_pf = rext_setup
    with_rdbp = jax.grad(_real_synthetic_term)(params, x, x_pf, True)
    # The same distance with the real feature computed from constant parameters.
    frozen = jax.lax.stop_gradient(params)
    synthetic_only = jax.grad(
        lambda p: jnp.mean(losses.euclidean_distance(_rext(frozen, x), _rext(p, x_pf)))
    )(params)
    plain = jax.grad(_real_synthetic_term)(params, x, x_pf, False)
    for k in params:
        np.testing.assert_allclose(with_rdbp[k], synthetic_only[k], rtol=1e-6, atol=1e-7)
        assert not np.allclose(plain[k], synthetic_only[k], atol=1e-5)


@pytest.mark.parametrize("rdbp", [True, False])
def test_intra_class_terms_are_known_distances(rdbp):
    # 3-4-5 triangles: sample 0 is 5 from its partner and 10 from its synthetic face, sample 1
    # is 0 from its partner and 13 (5-12-13) from its synthetic face; terms are batch means.
    f_real = jnp.asarray([[0.0, 0.0], [1.0, 1.0]])
    f_partner = jnp.asarray([[3.0, 4.0], [1.0, 1.0]])
    f_synthetic = jnp.asarray([[6.0, 8.0], [6.0, 13.0]])
    terms = losses.intra_class_terms(f_real, f_partner, f_synthetic, rdbp=rdbp)
    np.testing.assert_allclose(terms["real"], 2.5, rtol=1e-6)
    np.testing.assert_allclose(terms["synthetic"], 11.5, rtol=1e-6)
    assert set(losses.intra_class_terms(f_real, f_partner, None, rdbp=rdbp)) == {"real"}


def test_raise_intensity_moves_the_own_class_only():
    v = jax.random.uniform(jax.random.PRNGKey(0), (64, 7))
    y = jnp.arange(64) % 7
    raised = losses.raise_intensity(y, v, 0.6)
    own = jax.nn.one_hot(y, 7, dtype=bool)
    np.testing.assert_allclose(raised[own], 0.6 + 0.4 * v[own], rtol=1e-6)
    assert float(raised[own].min()) >= 0.6 and float(raised[own].max()) <= 1.0
    np.testing.assert_array_equal(raised[~own], v[~own])
    assert losses.raise_intensity(y, v, 0.0) is v  # The paper's draw, untouched.
