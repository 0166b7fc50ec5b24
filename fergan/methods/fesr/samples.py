"""FESR's sample figures (Figs. 4-7) from the held-out faces."""

import os

import jax
import numpy as np

from fergan.evaluation import figures
from fergan.methods.fesr import rendering
from fergan.methods.fesr.model import FesrModel
from fergan.methods.fesr.state import TrainState

SWEEP_INTENSITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def write_samples(
    model: FesrModel, state: TrainState, test: dict, class_names, folder: str, seed: int
) -> dict[str, np.ndarray]:
    """expressions.png: inputs x every target expression; intensity_sweep.png: one subject,
    every expression at rising intensity; prior_faces.png: new identities from z with every
    expression. Returns the image grids (for TensorBoard); nothing without a generator."""
    if not model.hp.variant.use_gan:
        return {}
    os.makedirs(folder, exist_ok=True)
    nets = model.nets
    k, off, g = nets.num_classes, nets.inference_off_value, state.g.params
    inputs = test["x"][figures.sample_indices(test["y"], k)]
    grid = np.asarray(rendering.render_expressions(nets.generator, g, inputs, k, off_value=off))
    sweep = np.asarray(
        rendering.intensity_sweep(
            nets.generator, g, inputs[:1], k, np.asarray(SWEEP_INTENSITIES), off_value=off
        )
    )
    prior = np.asarray(
        rendering.prior_faces(
            nets.generator, g, jax.random.PRNGKey(seed), 4, k, nets.latent_dim, off_value=off
        )
    )
    figures.plot_expression_grid(os.path.join(folder, "expressions.png"), inputs, grid, class_names)
    figures.plot_intensity_sweep(
        os.path.join(folder, "intensity_sweep.png"), sweep, class_names, SWEEP_INTENSITIES
    )
    figures.plot_prior_faces(os.path.join(folder, "prior_faces.png"), prior, class_names)
    with_inputs = np.concatenate([inputs[:, None], grid], axis=1)
    return {
        "expressions": figures.image_grid(with_inputs),
        "intensity_sweep": figures.image_grid(sweep),
        "prior_faces": figures.image_grid(prior),
    }
