"""What evaluation reads from an FESR state: held-out outputs, the generator as an editor,
faces from the prior, identity features and the parameter overview."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fergan import losses
from fergan.batching import batched_apply
from fergan.identity.features import identity_features as lightcnn_features
from fergan.methods.base import Editor, FeatureFn
from fergan.methods.fesr import rendering
from fergan.methods.fesr.model import FesrModel
from fergan.methods.fesr.state import TrainState, r_head_params, r_trunk_params, recognizer_trunk


@functools.partial(jax.jit, static_argnums=0)
def evaluate_batch(model: FesrModel, state: TrainState, x, y) -> dict[str, jax.Array]:
    """Per-example outputs on x [B, S, S, c], y [B]: R's class and Rext feature, Dimg's class
    (with a classification head), and the reconstruction error |x - x_rec| of a variant with
    a generator (x rendered with its own expression at apex, the inference form of u)."""
    nets, variant = model.nets, model.hp.variant
    trunk = recognizer_trunk(nets, r_trunk_params(nets, state.r.params, state.identity), x)
    features, r_logits = nets.recognizer.apply(
        {"params": r_head_params(nets, state.r.params)}, trunk
    )
    out = {"prediction": jnp.argmax(r_logits, -1), "feature": features}
    if not variant.use_gan:
        return out
    if variant.use_dimg_cls:
        _, d_logits = nets.dimg.apply({"params": state.dimg.params}, x)
        out["dimg_prediction"] = jnp.argmax(d_logits, -1)
    u = losses.inference_code(y, jnp.ones(y.shape), nets.num_classes, nets.inference_off_value)
    x_rec = nets.generator.apply({"params": state.g.params}, x, u)
    out["rec_error"] = jnp.mean(jnp.abs(x - x_rec), axis=(1, 2, 3))
    return out


def editor(model: FesrModel, state: TrainState) -> Editor | None:
    """G(x_i, labels_i, intensities_i) with the model's inference off-value, in fixed-size
    padded batches; None for a variant without a generator (BASELINE)."""
    if not model.hp.variant.use_gan:
        return None
    nets = model.nets

    def edit(x: np.ndarray, labels: np.ndarray, intensities: np.ndarray, landmarks=None):
        # G reads the face alone: the landmarks are not used.
        render = lambda xb, lb, ab: rendering.render_edits(
            nets.generator, state.g.params, xb, lb, nets.num_classes, ab, nets.inference_off_value
        )
        return batched_apply(render, x, labels.astype(np.int32), intensities.astype(np.float32))

    return edit


def synthetic_faces(
    model: FesrModel, state: TrainState, per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """x_pf = Gdec([z, u(k)]) for `per_class` random z and every class k at apex, the other
    classes at the run's `model.inference_off_value`; None without a generator.

    Returns (faces [per_class * K, S, S, c], labels [per_class * K]).
    """
    if not model.hp.variant.use_gan:
        return None
    nets = model.nets
    k = nets.num_classes
    faces = rendering.prior_faces(
        nets.generator,
        state.g.params,
        jax.random.PRNGKey(seed),
        per_class,
        k,
        nets.latent_dim,
        nets.inference_off_value,
    )
    faces = np.asarray(faces).reshape(per_class * k, *faces.shape[2:])
    return faces, np.tile(np.arange(k, dtype=np.int32), per_class)


def identity_features(model: FesrModel, state: TrainState) -> FeatureFn:
    """F_id of the run's frozen LightCNN-29: faces [N, S, S, c] in [-1, 1] -> [N, 256*width]."""
    return lambda x: lightcnn_features(model.nets.identity, state.identity, x)


def parameters(state: TrainState) -> dict:
    """Every network's parameters by name (the parameter overview at the start of training)."""
    return {
        "G": state.g.params,
        "Dimg": state.dimg.params,
        "Dz": state.dz.params,
        "R": state.r.params,
        "LightCNN (frozen)": state.identity,
    }
