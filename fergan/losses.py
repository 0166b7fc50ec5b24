"""Every loss of the method, one small function each; equation numbers refer to the FESR paper.

All take per-sample network outputs and return scalar batch means, so the data-parallel step can
average them (and their gradients) over devices with `lax.pmean`.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax


def expression_code(y: jax.Array, v: jax.Array) -> jax.Array:
    """u(y) = v * (2 * onehot(y) - 1) (Eq. 2).

    y: [B] int labels; v: [B, K] intensities in [0, 1]. Returns [B, K] in [-1, 1].
    """
    onehot = jax.nn.one_hot(y, v.shape[-1], dtype=v.dtype)
    return v * (2.0 * onehot - 1.0)


def inference_code(
    y: jax.Array, intensity: jax.Array, num_classes: int, off_value: float = 0.5
) -> jax.Array:
    """u at inference: class y at intensity a, every other class at `off_value` (SPEC "Notation").

    y: [B] int, intensity: [B] in [0, 1]. Returns [B, K].
    """
    onehot = jax.nn.one_hot(y, num_classes)
    v = onehot * intensity[:, None] + (1.0 - onehot) * off_value
    return expression_code(y, v)


def raise_intensity(y: jax.Array, v: jax.Array, least: float) -> jax.Array:
    """v with each sample's own class y moved from [0, 1] to [least, 1]: v_y -> least + (1 -
    least) v_y, other classes unchanged (FESR's `recognizer.synthetic_min_intensity`, not a paper
    choice: the paper's v_y ~ U(0, 1) labels nearly neutral faces x_pf with y). y: [B] int, v:
    [B, K]. least = 0 returns v itself."""
    if least == 0:
        return v
    return v + jax.nn.one_hot(y, v.shape[-1], dtype=v.dtype) * least * (1.0 - v)


def critic_loss(adv_real: jax.Array, adv_fake: jax.Array) -> jax.Array:
    """WGAN critic term of L^img_adv,d (Eq. 5): -E[Dadv(x)] + E[Dadv(x_hat)]. Inputs [B]."""
    return jnp.mean(adv_fake) - jnp.mean(adv_real)


def generator_adv_loss(adv_fake: jax.Array) -> jax.Array:
    """L^img_adv,g = -E[Dadv(x_hat)] (Eq. 4). Input [B]."""
    return -jnp.mean(adv_fake)


def gradient_penalty(
    critic: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array, t: jax.Array
) -> jax.Array:
    """WGAN-GP term of Eq. 5: E[(||grad_x Dadv(x_mix)||_2 - 1)^2] with x_mix = t x + (1 - t) x_hat.

    critic maps [B, H, W, C] -> [B]; t: [B] in [0, 1]. The gradient of the SUM of the per-sample
    critic outputs gives each sample's own input gradient (a mean would scale them by 1/B).
    """
    t = t.reshape((-1,) + (1,) * (real.ndim - 1))
    mixed = t * real + (1.0 - t) * fake
    grads = jax.grad(lambda m: jnp.sum(critic(m)))(mixed)
    # eps keeps the square root differentiable where the gradient vanishes.
    norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))) + 1e-12)
    return jnp.mean(jnp.square(norms - 1.0))


def latent_discriminator_loss(logit_prior: jax.Array, logit_encoded: jax.Array) -> jax.Array:
    """L^z_adv,d (Eq. 7): BCE(Dz(z), 1) + BCE(Dz(g(x)), 0). Logits [B]."""
    return jnp.mean(
        optax.sigmoid_binary_cross_entropy(logit_prior, jnp.ones_like(logit_prior))
        + optax.sigmoid_binary_cross_entropy(logit_encoded, jnp.zeros_like(logit_encoded))
    )


def latent_generator_loss(logit_encoded: jax.Array) -> jax.Array:
    """L^z_adv,g (Eq. 6), non-saturating: BCE(Dz(g(x)), 1). Logits [B]."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logit_encoded, jnp.ones_like(logit_encoded)))


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy CE(logits, y): L^f_cls,D (Eq. 8), L^r_cls,D (Eq. 9), L_cls,R (Eqs. 20-21).

    logits [B, K], labels [B] int.
    """
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of argmax(logits) == labels. logits [B, K], labels [B]."""
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def reconstruction_loss(x: jax.Array, x_rec: jax.Array) -> jax.Array:
    """L_rec = mean |x - Gdec([g(x), u(y)])| (Eqs. 10-11). Images [B, H, W, C]."""
    return jnp.mean(jnp.abs(x - x_rec))


def paired_loss(target: jax.Array, rendered: jax.Array, valid: jax.Array) -> jax.Array:
    """mean_i valid_i * mean |target_i - rendered_i|: L1 to a same-subject target where one
    exists (not a paper loss: FESR's `loss.lambda_pair` / `lambda_neutral`). Images [B, H, W, C],
    valid [B] in {0, 1}; a mean over the whole batch, so device shards average exactly."""
    per_sample = jnp.mean(jnp.abs(target - rendered), axis=(1, 2, 3))
    return jnp.mean(valid * per_sample)


def identity_loss(feature_real: jax.Array, feature_rec: jax.Array) -> jax.Array:
    """L_id = mean |F_id(x_rec) - F_id(x)| (Eq. 12). Features [B, D]; gradient flows via x_rec."""
    return jnp.mean(jnp.abs(feature_rec - feature_real))


def euclidean_distance(a: jax.Array, b: jax.Array) -> jax.Array:
    """Per-sample ||a - b||_2, [B, D] -> [B], with a gradient that stays finite at a == b."""
    sq = jnp.sum(jnp.square(a - b), axis=-1)
    # Double-where: the sqrt never sees 0, so its derivative is never inf * 0 = nan.
    safe = jnp.where(sq > 0, sq, 1.0)
    return jnp.where(sq > 0, jnp.sqrt(safe), 0.0)


def intra_class_terms(
    f_real: jax.Array, f_partner: jax.Array, f_synthetic: jax.Array | None, rdbp: bool = True
) -> dict[str, jax.Array]:
    """L_intra = d(Rext(x), Rext(x_pr)) + d(Rext(x), Rext(x_pf)) (Eqs. 14-18) as its two terms,
    batch means: `real` (Eq. 15) and `synthetic` (Eq. 16; absent when f_synthetic is None).
    L_intra is their sum.

    With `rdbp` (real data-guided back-propagation, Eq. 18) the real feature is a fixed target in
    the real/synthetic distance: only the synthetic branch receives its gradient. Features [B, D].
    """
    terms = {"real": jnp.mean(euclidean_distance(f_real, f_partner))}
    if f_synthetic is not None:
        target = jax.lax.stop_gradient(f_real) if rdbp else f_real
        terms["synthetic"] = jnp.mean(euclidean_distance(target, f_synthetic))
    return terms
