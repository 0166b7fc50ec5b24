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


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Eqs. 3 and 4, the discriminator's side: -E[log D(real)] - E[log(1 - D(fake))], logits
    [B] (D_att: (x_t, g_t) against (x', g_t); D_i: f* ~ U(-1, 1)^50 against f(x))."""
    real = optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
    fake = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
    return jnp.mean(real) + jnp.mean(fake)


def generator_adversarial_loss(fake_logits: jax.Array) -> jax.Array:
    """The generator's side of Eqs. 3 and 4 in the non-saturating form, -E[log D(fake)] (the
    minimax form's gradient vanishes while D wins, as it does early)."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)))


def smoothed_labels(labels: jax.Array, num_classes: int, rho: float) -> jax.Array:
    """Eq. 6: F_s(k) = 1 - (K - 1) rho / K for k = y_t and rho / K otherwise. labels [B] ->
    [B, K]; rho = 0 gives one-hot."""
    one_hot = jax.nn.one_hot(labels, num_classes)
    return one_hot * (1.0 - rho) + rho / num_classes


def classification_loss(
    real_logits: jax.Array, y: jax.Array, fake_logits: jax.Array, y_t: jax.Array, rho: float
) -> jax.Array:
    """Eq. 5: softmax cross-entropy of C on the real faces (one-hot y) plus that on the rendered
    faces x' against the smoothed target labels F_s(y_t). Logits [B, K], labels [B]."""
    k = real_logits.shape[-1]
    real = optax.softmax_cross_entropy_with_integer_labels(real_logits, y)
    fake = optax.softmax_cross_entropy(fake_logits, smoothed_labels(y_t, k, rho))
    return jnp.mean(real) + jnp.mean(fake)


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, rho: float) -> jax.Array:
    """The rendered faces' term of Eq. 5 alone (the generator's side): mean CE against F_s."""
    target = smoothed_labels(labels, logits.shape[-1], rho)
    return jnp.mean(optax.softmax_cross_entropy(logits, target))


def content_loss(reference: jax.Array, rendered: jax.Array) -> jax.Array:
    """Eq. 7: mean |reference - x'| over pixels and batch; the reference is the input x
    (`geometry.con_target=input`, the paper) or the subject's face with the target's pose and
    expression (`same_subject`). Images [B, S, S, c]."""
    return jnp.mean(jnp.abs(reference - rendered))


def total_variation(x: jax.Array) -> jax.Array:
    """Eq. 8 as means: mean |x[w+1, h] - x[w, h]| + mean |x[w, h+1] - x[w, h]|, [B, S, S, c]."""
    across = jnp.mean(jnp.abs(x[:, :, 1:] - x[:, :, :-1]))
    down = jnp.mean(jnp.abs(x[:, 1:] - x[:, :-1]))
    return across + down


def geometry_reconstruction_loss(g: jax.Array, g_hat: jax.Array) -> jax.Array:
    """Eq. 9: the batch mean of ||g_t - g^_t||_2 over the 136 coordinates. [B, 136] each."""
    return jnp.mean(jnp.sqrt(jnp.sum(jnp.square(g - g_hat), axis=-1) + 1e-12))
