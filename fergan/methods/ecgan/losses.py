"""ECGAN's losses (paper ecgan, Sec. 3.1), one small function each; every norm is a batch mean
so the data-parallel step can average losses and gradients with lax.pmean.

Notation: x a neutral face (domain X), y an expressive face (domain Y) with one-hot expression
z_y, z the expression asked of x; G_XY(x, z) adds it, G_YX(., z) removes the expression z
(the decision on G_YX's condition, docs/methods.md).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from fergan.losses import reconstruction_loss

MASK_LOSSES = ("weighted", "masked_input")


def lsgan_discriminator_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
    """The discriminator's side of Eq. 1: E[(D(y) - 1)^2] + E[D(G(x, z))^2]. Patch scores
    [B, P, P] (any shape), averaged over patches and samples."""
    return jnp.mean(jnp.square(real_scores - 1.0)) + jnp.mean(jnp.square(fake_scores))


def lsgan_generator_loss(fake_scores: jax.Array) -> jax.Array:
    """The generator's side of Eq. 1 (least squares): E[(D(G(x, z)) - 1)^2]."""
    return jnp.mean(jnp.square(fake_scores - 1.0))


def cycle_loss(x: jax.Array, x_cycled: jax.Array, y: jax.Array, y_cycled: jax.Array):
    """Eq. 2: ||G_YX(G_XY(x, z), z) - x||_1 + ||G_XY(G_YX(y, z_y), z_y) - y||_1. Images
    [B, S, S, c]."""
    return reconstruction_loss(x, x_cycled) + reconstruction_loss(y, y_cycled)


def identity_loss(x: jax.Array, x_kept: jax.Array, y: jax.Array, y_kept: jax.Array):
    """Eq. 4: ||G_YX(x, z) - x||_1 + ||G_XY(y, z_y) - y||_1: a generator given a face already in
    its output domain leaves it as it is."""
    return reconstruction_loss(x, x_kept) + reconstruction_loss(y, y_kept)


def context_loss(features: jax.Array, features_cycled: jax.Array) -> jax.Array:
    """One term of Eq. 3 as a cycle-perceptual loss: the squared difference of the frozen
    feature maps phi [B, h, w, C] of a face and of its cycle, averaged over the map (Eq. 3's
    1 / (W H)), its channels and the batch."""
    return jnp.mean(jnp.square(features - features_cycled))


def weighted_cycle_loss(x: jax.Array, x_cycled: jax.Array, mask: jax.Array) -> jax.Array:
    """One term of Eq. 5, reinterpreted (`ecgan.mask_loss=weighted`): the cycle's absolute error
    weighted by the face mask, mean(M |x_cycled - x|) / mean(M), so the face counts and the
    background does not. Images [B, S, S, c]; mask [B, S, S, 1] in {0, 1}."""
    weight = jnp.broadcast_to(mask, x.shape)
    return jnp.sum(weight * jnp.abs(x_cycled - x)) / jnp.maximum(jnp.sum(weight), 1.0)


def masked_input_cycle_loss(
    x: jax.Array, mask: jax.Array, cycle: Callable[[jax.Array], jax.Array]
) -> jax.Array:
    """One term of Eq. 5 as extracted (`ecgan.mask_loss=masked_input`):
    ||G_YX(G_XY(x * M)) - x * M||_1, the masked face sent through the cycle `cycle`."""
    masked = x * mask
    return reconstruction_loss(masked, cycle(masked))


def mask_loss(kind: str, x, x_cycled, mask, cycle) -> jax.Array:
    """One term of Eq. 5 in the form `kind` (MASK_LOSSES)."""
    if kind == "weighted":
        return weighted_cycle_loss(x, x_cycled, mask)
    if kind == "masked_input":
        return masked_input_cycle_loss(x, mask, cycle)
    raise ValueError(f"ecgan.mask_loss={kind!r} is unknown; allowed: {MASK_LOSSES}")
