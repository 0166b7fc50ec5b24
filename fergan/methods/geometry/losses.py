"""The losses of geometry-guided pose-invariant FER (paper geometry_guided_pose_invariant_fer,
Sec. III-B), one small function each. Every loss is a batch mean (sums over pixels become
per-element means, so the paper's weights act on losses of order one and the data-parallel step
can average with lax.pmean).

Notation: x a face, f(x) = G_enc(x) its identity code, g_t target landmarks [B, 136] with code
E(g_t), x' = G_dec(f(x), E(g_t)) the rendered face, y_t the target's expression.
"""

import jax
import jax.numpy as jnp
import optax

from fergan import losses

# Eqs. 3 and 4 are the BCE pair FESR's Dz already uses (the generator's side non-saturating:
# the minimax form's gradient vanishes while D wins, as it does early); Eq. 7 is the shared
# mean L1. The names say which equation a step means.
discriminator_loss = losses.latent_discriminator_loss
generator_adversarial_loss = losses.latent_generator_loss
content_loss = losses.reconstruction_loss  # Against x (con_target=input) or x_t (same_subject).


def smoothed_labels(labels: jax.Array, num_classes: int, rho: float) -> jax.Array:
    """Eq. 6: F_s(k) = 1 - (K - 1) rho / K for k = y_t and rho / K otherwise. labels [B] ->
    [B, K]; rho = 0 gives one-hot."""
    one_hot = jax.nn.one_hot(labels, num_classes)
    return one_hot * (1.0 - rho) + rho / num_classes


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, rho: float) -> jax.Array:
    """The rendered faces' term of Eq. 5 (the generator's side): mean CE against F_s(labels).
    Logits [B, K], labels [B]."""
    target = smoothed_labels(labels, logits.shape[-1], rho)
    return jnp.mean(optax.softmax_cross_entropy(logits, target))


def classification_loss(
    real_logits: jax.Array, y: jax.Array, fake_logits: jax.Array, y_t: jax.Array, rho: float
) -> jax.Array:
    """Eq. 5: C's cross-entropy on the real faces (one-hot y) plus that on the rendered faces x'
    against the smoothed target labels F_s(y_t). Logits [B, K], labels [B]."""
    return losses.classification_loss(real_logits, y) + smoothed_cross_entropy(
        fake_logits, y_t, rho
    )


def total_variation(x: jax.Array) -> jax.Array:
    """Eq. 8 as means: mean |x[w+1, h] - x[w, h]| + mean |x[w, h+1] - x[w, h]|, [B, S, S, c]."""
    across = jnp.mean(jnp.abs(x[:, :, 1:] - x[:, :, :-1]))
    down = jnp.mean(jnp.abs(x[:, 1:] - x[:, :-1]))
    return across + down


def geometry_reconstruction_loss(g: jax.Array, g_hat: jax.Array) -> jax.Array:
    """Eq. 9: the batch mean of ||g_t - g^_t||_2 over the 136 coordinates. [B, 136] each."""
    return jnp.mean(losses.euclidean_distance(g, g_hat))
