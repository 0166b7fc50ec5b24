"""Rendering with a trained generator: expression grids, intensity sweeps, faces from the prior.

All functions are jitted per network definition and return images in [-1, 1].
"""

import functools

import jax
import jax.numpy as jnp

from fergan import losses
from fergan.models import Generator


@functools.partial(jax.jit, static_argnums=(0, 3))
def render_expressions(
    generator: Generator, g_params, x: jax.Array, num_classes: int, intensity=1.0, off_value=0.5
) -> jax.Array:
    """Each face re-rendered with every expression (Figs. 4-5).

    x: [N, S, S, c] -> [N, K, S, S, c], class k at `intensity` (inference form of u, SPEC).
    """
    n = x.shape[0]
    code = generator.apply({"params": g_params}, x, method=Generator.encode)
    labels = jnp.tile(jnp.arange(num_classes), n)
    u = losses.inference_code(
        labels, jnp.full((n * num_classes,), intensity), num_classes, off_value
    )
    out = generator.apply(
        {"params": g_params}, jnp.repeat(code, num_classes, axis=0), u, method=Generator.decode
    )
    return out.reshape((n, num_classes, *out.shape[1:]))


@functools.partial(jax.jit, static_argnums=(0, 4))
def render_edits(
    generator: Generator,
    g_params,
    x: jax.Array,
    labels,
    num_classes: int,
    intensities,
    off_value=0.5,
) -> jax.Array:
    """Face i re-rendered with its own target class and intensity (one edit per face).

    x: [N, S, S, c], labels: [N] int, intensities: [N] -> [N, S, S, c].
    """
    u = losses.inference_code(labels, jnp.asarray(intensities, jnp.float32), num_classes, off_value)
    return generator.apply({"params": g_params}, x, u)


@functools.partial(jax.jit, static_argnums=(0, 3))
def intensity_sweep(
    generator: Generator, g_params, x: jax.Array, num_classes: int, intensities, off_value=0.5
) -> jax.Array:
    """One face, every expression at every intensity (Fig. 6).

    x: [1, S, S, c], intensities: [A] -> [K, A, S, S, c].
    """
    intensities = jnp.asarray(intensities, jnp.float32)
    a = intensities.shape[0]
    code = generator.apply({"params": g_params}, x, method=Generator.encode)
    labels = jnp.repeat(jnp.arange(num_classes), a)
    u = losses.inference_code(labels, jnp.tile(intensities, num_classes), num_classes, off_value)
    out = generator.apply(
        {"params": g_params}, jnp.repeat(code, num_classes * a, axis=0), u, method=Generator.decode
    )
    return out.reshape((num_classes, a, *out.shape[1:]))


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def prior_faces(
    generator: Generator,
    g_params,
    key: jax.Array,
    rows: int,
    num_classes: int,
    latent_dim: int,
    off_value=0.5,
) -> jax.Array:
    """New identities from z ~ U(-1, 1)^n, each with every expression at apex (Fig. 7).

    Returns [rows, K, S, S, c].
    """
    z = jax.random.uniform(key, (rows, latent_dim), minval=-1.0, maxval=1.0)
    labels = jnp.tile(jnp.arange(num_classes), rows)
    u = losses.inference_code(labels, jnp.ones((rows * num_classes,)), num_classes, off_value)
    out = generator.apply(
        {"params": g_params}, jnp.repeat(z, num_classes, axis=0), u, method=Generator.decode
    )
    return out.reshape((rows, num_classes, *out.shape[1:]))
