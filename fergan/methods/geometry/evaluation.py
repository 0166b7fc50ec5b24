"""What evaluation reads from a geometry state: C's held-out outputs, G as an editor (the target
expression's template geometry), identity features, samples and the parameter overview."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from fergan.batching import batched_apply
from fergan.evaluation import figures
from fergan.identity.features import identity_features as lightcnn_features
from fergan.methods.base import Editor, FeatureFn
from fergan.methods.geometry import step
from fergan.methods.geometry.model import GeometryModel
from fergan.methods.geometry.step import GeometryState

# Held-out faces (of distinct subjects) in the sample grid.
SAMPLE_ROWS = 6


@functools.partial(jax.jit, static_argnums=0)
def evaluate_batch(model: GeometryModel, state: GeometryState, x, y) -> dict[str, jax.Array]:
    """Per-example outputs of C on x [B, S, S, c]: `prediction` [B] and `feature` [B, F]."""
    del y
    feature, logits, _ = step.classify(model, state, state.c.params, x)
    return {"prediction": jnp.argmax(logits, -1), "feature": feature}


@functools.partial(jax.jit, static_argnums=0)
def render_templates(model: GeometryModel, state: GeometryState, x, template_index):
    """G(x_i, E(template_i)) [B, S, S, c]: face x_i with the geometry (pose and expression) of
    bank template `template_index`_i, E at its running statistics."""
    marks = jnp.asarray(model.templates.landmark_array())[template_index]
    (code, _), _ = step.embed(model, state.e.params, state.e_stats, marks, train=False)
    return step.render(model, state.g.params, x, code)[0]


def editor(model: GeometryModel, state: GeometryState) -> Editor:
    """Renders x_i with the geometry of the template of class labels_i nearest the frontal pose
    (`TemplateBank.for_class`); intensities and the source landmarks are not used."""
    index_of_class = np.asarray(
        [model.templates.for_class(k) for k in range(model.num_classes)], np.int32
    )

    def edit(x: np.ndarray, labels: np.ndarray, intensities: np.ndarray, landmarks=None):
        del intensities, landmarks
        apply = lambda xb, tb: render_templates(model, state, xb, tb)
        return batched_apply(apply, x, index_of_class[np.asarray(labels, np.int64)])

    return edit


def identity_features(model: GeometryModel, state: GeometryState) -> FeatureFn:
    """F_id of the run's frozen LightCNN-29: faces [N, S, S, c] in [-1, 1] -> [N, 256*width]."""
    return lambda x: lightcnn_features(model.identity, state.identity, x)


def parameters(state: GeometryState) -> dict:
    """Every network's parameters by name (the parameter overview at the start of training)."""
    out = {"E": state.e.params, "G_enc": state.g.params["encoder"]}
    out |= {"G_dec": state.g.params["decoder"], "D_att": state.d_att.params}
    out |= {"D_i": state.d_i.params, "C": state.c.params}
    return out | {"LightCNN (frozen)": state.identity}


def grid_templates(model: GeometryModel) -> list[int]:
    """One bank template per (pose, expression) cell the bank covers, sorted by pose then class."""
    first = {}
    for i, cell in enumerate(zip(model.templates.poses, model.templates.labels, strict=True)):
        first.setdefault(cell, i)
    return [first[cell] for cell in sorted(first)]


def write_samples(
    model: GeometryModel, state: GeometryState, sources: dict, class_names, folder: str, seed: int
) -> dict[str, np.ndarray]:
    """targets.png: held-out faces of distinct subjects (the first SAMPLE_ROWS), each rendered
    with every (pose, expression) of the template bank. Returns the image grid (TensorBoard)."""
    del seed  # Rendering draws nothing.
    os.makedirs(folder, exist_ok=True)
    _, first = np.unique(sources["subject"], return_index=True)
    inputs = sources["x"][np.sort(first)[:SAMPLE_ROWS]]
    cells = grid_templates(model)
    n, t = len(inputs), len(cells)
    faces = np.repeat(inputs, t, axis=0)
    index = np.tile(np.asarray(cells, np.int32), n)
    out = batched_apply(lambda xb, tb: render_templates(model, state, xb, tb), faces, index)
    grid = out.reshape(n, t, *inputs.shape[1:])
    names = [
        f"{model.templates.poses[i]:+d}° {class_names[model.templates.labels[i]]}" for i in cells
    ]
    figures.plot_expression_grid(
        os.path.join(folder, "targets.png"), inputs, grid, names, title="targets: (yaw, expression)"
    )
    return {"targets": figures.image_grid(np.concatenate([inputs[:, None], grid], axis=1))}
