"""LSSL's losses (paper A = attribute-guided synthesis, paper B = LSSL), one small function each.

The adversarial terms are WGAN-GP on the patch critic of D, shared with FESR (`fergan.losses`:
A Eq. 1 = B Eq. 1, with the patch map averaged per sample). The parsing loss lives with the
parsing network (`fergan.methods.lssl.parser`, B Eq. 5).
"""

import jax
import jax.numpy as jnp
import optax

from fergan import losses

CLS_LOSSES = ("softmax", "bce")


def patch_score(adv_map: jax.Array) -> jax.Array:
    """D's patch map [B, h, w] (or [B, h, w, 1]) -> one critic score per sample [B] (its mean)."""
    return jnp.mean(adv_map.reshape(adv_map.shape[0], -1), axis=1)


def attribute_classification_loss(
    logits: jax.Array, labels: jax.Array, kind: str = "softmax"
) -> jax.Array:
    """L_cls_r (A Eq. 2) on real faces and their labels, L_cls_f (A Eq. 3) on generated faces and
    their target labels. logits [B, K], labels [B] int.

    'bce' is the papers' form: the sum over the K attributes of binary cross-entropies against
    the one-hot label, averaged over the batch. 'softmax' (the default, a documented departure:
    expressions are single-label) is the cross-entropy FESR uses.
    """
    if kind == "softmax":
        return losses.classification_loss(logits, labels)
    if kind == "bce":
        onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
        return jnp.mean(jnp.sum(optax.sigmoid_binary_cross_entropy(logits, onehot), axis=-1))
    raise ValueError(f"lssl.cls_loss={kind!r} is unknown; allowed: {CLS_LOSSES}")


def identity_loss(x: jax.Array, x_same: jax.Array) -> jax.Array:
    """L_id = E ||Gdec(Genc(x, s), label) - x||_1 (A Eq. 4 with the source label, B Eq. 4 with
    the target label; `lssl.id_label` picks). Images [B, H, W, C]; the mean absolute error."""
    return jnp.mean(jnp.abs(x_same - x))


def bidirectional_loss(
    x: jax.Array,
    x_back: jax.Array,
    latent: jax.Array,
    latent_fake: jax.Array,
    s: jax.Array | None = None,
    s_back: jax.Array | None = None,
) -> jax.Array:
    """L_bi (A Eq. 5, B Eq. 6) = ||x - x^||_1 + ||s - s^||_1 + ||Genc(x, s) - Genc(x', s')||_1,
    with (x', s') = Gdec(Genc(x, s), y) and (x^, s^) = Gdec(Genc(x', s'), y'). Each norm is a
    mean absolute error; the side term is left out without a side image (variant LSSL-S).

    x, x_back: [B, H, W, C]; latent, latent_fake: Genc outputs [B, h, w, C']; s, s_back: side
    images like x, or None.
    """
    total = jnp.mean(jnp.abs(x - x_back)) + jnp.mean(jnp.abs(latent - latent_fake))
    if s is not None:
        total = total + jnp.mean(jnp.abs(s - s_back))
    return total
