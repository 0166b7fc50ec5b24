"""What evaluation reads from an LSSL state: held-out outputs, G as an editor (with the landmark
heatmap of each face as its side image), identity features, samples and the parameter
overview."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from fergan.batching import batched_apply
from fergan.data import heatmaps
from fergan.evaluation import cv_metrics, figures
from fergan.identity.features import identity_features as lightcnn_features
from fergan.methods.base import Editor, FeatureFn
from fergan.methods.lssl.model import LsslModel
from fergan.methods.lssl.step import LsslState
from fergan.training.recognition import recognize


@functools.partial(jax.jit, static_argnums=0)
def evaluate_batch(model: LsslModel, state: LsslState, x, y) -> dict[str, jax.Array]:
    """Per-example outputs on x [B, S, S, c], y [B]: the recognizer's class and feature (D is
    not scored: with a side input it judges (x, s) pairs, which held-out faces lack)."""
    del y
    feature, logits = recognize(model.recognizer, model.identity, state.identity, state.r.params, x)
    return {"prediction": jnp.argmax(logits, -1), "feature": feature}


def side_images(model: LsslModel, landmarks: np.ndarray | None, n: int) -> np.ndarray | None:
    """The side images s [N, S, S, c] of faces with `landmarks` [N, 68, 2] (None for a variant
    without a side input); ValueError when the variant needs them and they are missing."""
    if not model.hp.variant.side:
        return None
    if landmarks is None or len(landmarks) != n:
        raise ValueError(
            "method lssl renders with each face's landmark heatmap: the faces' landmarks are "
            "needed (variant LSSL-S works without)"
        )
    size, c = model.image_size, model.channels
    return np.stack([heatmaps.landmark_heatmap(p, size, c) for p in landmarks])


@functools.partial(jax.jit, static_argnums=0)
def _render(model: LsslModel, g_params, x, s, labels):
    code = jax.nn.one_hot(labels, model.num_classes)
    return model.generator.apply({"params": g_params}, x, s, code)[0]


def editor(model: LsslModel, state: LsslState) -> Editor | None:
    """G(x_i, s_i, one-hot labels_i) in fixed-size padded batches, s_i the heatmap of the face's
    landmarks; None for BASELINE. G has no intensity: the intensities are not used
    (`Method.edits_intensity` is False)."""
    if not model.hp.variant.gan:
        return None

    def edit(x: np.ndarray, labels: np.ndarray, intensities: np.ndarray, landmarks=None):
        del intensities
        s = side_images(model, landmarks, len(x))
        labels = labels.astype(np.int32)
        if s is None:
            render = lambda xb, lb: _render(model, state.g.params, xb, None, lb)
            return batched_apply(render, x, labels)
        render = lambda xb, sb, lb: _render(model, state.g.params, xb, sb, lb)
        return batched_apply(render, x, s, labels)

    return edit


def identity_features(model: LsslModel, state: LsslState) -> FeatureFn:
    """F_id of the run's frozen LightCNN-29: faces [N, S, S, c] in [-1, 1] -> [N, 256*width]."""
    return lambda x: lightcnn_features(model.identity, state.identity, x)


def parameters(state: LsslState) -> dict:
    """Every network's parameters by name (the parameter overview at the start of training)."""
    nets = {"G": state.g, "D": state.d, "recognizer": state.r}
    out = {name: net.params for name, net in nets.items() if net is not None}
    if state.parser is not None:
        out["parser (frozen)"] = state.parser
    return out | {"LightCNN (frozen)": state.identity}


def write_samples(
    model: LsslModel, state: LsslState, test: dict, class_names, folder: str, seed: int
) -> dict[str, np.ndarray]:
    """expressions.png: test faces (one per class) rendered with every expression, beside their
    side images; nothing for BASELINE. Returns the image grid (for TensorBoard)."""
    del seed  # Rendering draws nothing.
    edit = editor(model, state)
    if edit is None:
        return {}
    os.makedirs(folder, exist_ok=True)
    k = model.num_classes
    pick = figures.sample_indices(test["y"], k)
    inputs, marks = test["x"][pick], test["landmarks"][pick]
    grid = cv_metrics.render_all(edit, inputs, k, landmarks=marks)
    figures.plot_expression_grid(os.path.join(folder, "expressions.png"), inputs, grid, class_names)
    return {"expressions": figures.image_grid(np.concatenate([inputs[:, None], grid], axis=1))}
