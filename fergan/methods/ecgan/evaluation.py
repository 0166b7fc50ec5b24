"""What evaluation reads from an ECGAN state: held-out outputs of both recognizers, G_XY as an
editor of neutral faces, Table 2's scores of generated faces, identity features, samples and the
parameter overview."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from fergan.batching import batched_apply
from fergan.evaluation import cv_metrics, figures
from fergan.identity.features import identity_features as lightcnn_features
from fergan.methods.base import Editor, FeatureFn
from fergan.methods.ecgan.model import EcganModel
from fergan.methods.ecgan.step import EcganState
from fergan.training.recognition import recognize

# Neutral faces (of distinct subjects) in the sample grid.
SAMPLE_ROWS = 6


def _logits(model: EcganModel, state: EcganState, r_params, x) -> tuple[jax.Array, jax.Array]:
    return recognize(model.recognizer, model.identity, state.identity, r_params, x)


@functools.partial(jax.jit, static_argnums=0)
def evaluate_batch(model: EcganModel, state: EcganState, x, y) -> dict[str, jax.Array]:
    """Per-example outputs on x [B, S, S, c], y [B]: `prediction` and `feature` of `r` (trained
    on real + generated faces) and `original_prediction` of `r_original` (real faces only), so
    the held-out metrics hold Table 2's "original" and "+generated" rows side by side."""
    del y
    feature, logits = _logits(model, state, state.r.params, x)
    _, original = _logits(model, state, state.r_original.params, x)
    return {
        "prediction": jnp.argmax(logits, -1),
        "feature": feature,
        "original_prediction": jnp.argmax(original, -1),
    }


@functools.partial(jax.jit, static_argnums=0)
def _render(model: EcganModel, g_params, x, labels):
    return model.generator.apply({"params": g_params}, x, jax.nn.one_hot(labels, model.num_classes))


def editor(model: EcganModel, state: EcganState) -> Editor:
    """G_XY(x_i, one-hot labels_i) in fixed-size padded batches: x should be neutral faces
    (`Method.edits_from_neutral`). No intensity and no landmarks are used."""

    def edit(x: np.ndarray, labels: np.ndarray, intensities: np.ndarray, landmarks=None):
        del intensities, landmarks
        render = lambda xb, lb: _render(model, state.g_xy.params, xb, lb)
        return batched_apply(render, x, labels.astype(np.int32))

    return edit


@functools.partial(jax.jit, static_argnums=0)
def _original_probabilities(model: EcganModel, state: EcganState, x):
    return jax.nn.softmax(_logits(model, state, state.r_original.params, x)[1], -1)


def extra_metrics(model: EcganModel, state: EcganState, sources: dict) -> dict:
    """Table 2's "train on original, test on generated" row: every neutral source face rendered
    with every expression z by G_XY and scored by `r_original` (fergan's R trained on the real
    training faces only). `vgg_score` = E p(z | G_XY(x, z)) (the paper's VGG score) and
    `generated_accuracy` = how often its argmax is z."""
    k = model.num_classes
    renders = cv_metrics.render_all(editor(model, state), sources["x"], k)  # [N, K, S, S, c]
    flat = renders.reshape(-1, *renders.shape[2:])
    probs = batched_apply(lambda xb: _original_probabilities(model, state, xb), flat)
    z = np.tile(np.arange(k), len(sources["x"]))
    return {
        "vgg_score": float(np.mean(probs[np.arange(len(z)), z])),
        "generated_accuracy": float(np.mean(np.argmax(probs, -1) == z)),
    }


def identity_features(model: EcganModel, state: EcganState) -> FeatureFn:
    """F_id of the run's frozen LightCNN-29: faces [N, S, S, c] in [-1, 1] -> [N, 256*width]."""
    return lambda x: lightcnn_features(model.identity, state.identity, x)


def parameters(state: EcganState) -> dict:
    """Every network's parameters by name (the parameter overview at the start of training)."""
    nets = ("g_xy", "g_yx", "d_x", "d_y", "r", "r_original")
    out = {name: getattr(state, name).params for name in nets}
    return out | {"LightCNN (frozen)": state.identity}


def write_samples(
    model: EcganModel, state: EcganState, sources: dict, class_names, folder: str, seed: int
) -> dict[str, np.ndarray]:
    """expressions.png: held-out neutral faces of distinct subjects (the first SAMPLE_ROWS) and
    each rendered with every expression. Returns the image grid (for TensorBoard)."""
    del seed  # Rendering draws nothing.
    os.makedirs(folder, exist_ok=True)
    _, first = np.unique(sources["subject"], return_index=True)
    inputs = sources["x"][np.sort(first)[:SAMPLE_ROWS]]
    grid = cv_metrics.render_all(editor(model, state), inputs, model.num_classes)
    figures.plot_expression_grid(os.path.join(folder, "expressions.png"), inputs, grid, class_names)
    return {"expressions": figures.image_grid(np.concatenate([inputs[:, None], grid], axis=1))}
