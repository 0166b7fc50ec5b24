"""The recognition stage shared by methods that train a recognizer after their generator (lssl,
ecgan): one update of a classifier on a batch of real faces and, beside them, faces a frozen
generator rendered, with per-sample dropout keys so any device split gives the same update.

The recognizer is fergan's R (`RecognizerHead` on the frozen LightCNN-29 trunk, dropout on its
feature) or any module mapping faces to (anything, logits), trained from scratch.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from fergan import losses
from fergan.models import LightCNN29, RecognizerHead, to_lightcnn_input
from fergan.models.recognizer import DROPOUT_RATE, rext_feature_dim
from fergan.training.optim import NetState, adam_step
from fergan.types import Metrics, PyTree


def check_frozen_trunk(config, method: str) -> None:
    """The shared recognition stage trains R on the frozen LightCNN trunk only."""
    if config.recognizer.trunk != "frozen":
        raise ValueError(
            f"recognizer.trunk={config.recognizer.trunk!r}: method {method} trains R on the frozen "
            "LightCNN trunk only; allowed: 'frozen'"
        )


def on_trunk(recognizer: nn.Module) -> bool:
    """True for fergan's R, which reads the LightCNN trunk's output."""
    return isinstance(recognizer, RecognizerHead)


def init_recognizer(
    recognizer: nn.Module, identity: LightCNN29, identity_params: PyTree, key, x: jax.Array
) -> PyTree:
    """Fresh parameters of `recognizer` for faces like x [1, S, S, c]."""
    if on_trunk(recognizer):
        grey = jnp.zeros((*x.shape[:-1], 1), x.dtype)
        trunk = identity.apply({"params": identity_params}, grey, method=LightCNN29.trunk)
        return recognizer.init(key, trunk)["params"]
    return recognizer.init(key, x)["params"]


def recognize(
    recognizer: nn.Module,
    identity: LightCNN29,
    identity_params: PyTree,
    r_params: PyTree,
    x: jax.Array,
    keep: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """(feature [B, F], logits [B, K]) on faces x [B, S, S, c] in [-1, 1]. R reads the frozen
    trunk and drops features with the per-sample `keep` mask [B, F] (None: evaluation); another
    recognizer's feature is its logits. The trunk is frozen because no caller differentiates
    `identity_params`; gradients do reach x (geometry's generator learns from C's loss)."""
    if not on_trunk(recognizer):
        _, logits = recognizer.apply({"params": r_params}, x)
        return logits, logits
    trunk = identity.apply(
        {"params": identity_params}, to_lightcnn_input(x), method=LightCNN29.trunk
    )
    return recognizer.apply({"params": r_params}, trunk, keep)


def dropout_key(rng: jax.Array, step: jax.Array) -> jax.Array:
    """The recognition stage's key at iteration `step` of a run with base key `rng`."""
    return jax.random.fold_in(jax.random.fold_in(rng, step), 0x5EC)


def keep_masks(key: jax.Array, indices: jax.Array, width: float, copies: int) -> jax.Array:
    """Rcls dropout keep-masks [copies, B, F], sample i's from fold_in(key, index_i)."""
    shape = (copies, rext_feature_dim(width))
    draw = lambda index: jax.random.bernoulli(
        jax.random.fold_in(key, index), 1.0 - DROPOUT_RATE, shape
    )
    return jnp.swapaxes(jax.vmap(draw)(indices), 0, 1).astype(jnp.float32)


def recognizer_update(
    recognizer: nn.Module,
    identity: LightCNN29,
    identity_params: PyTree,
    r: NetState,
    faces: list[jax.Array],
    labels: list[jax.Array],
    key: jax.Array,
    indices: jax.Array,
    learning_rate: jax.Array,
    betas: tuple[float, float],
    axis_name: str | None,
) -> tuple[NetState, Metrics]:
    """One Adam update of the recognizer on the mean softmax cross-entropy over `faces` (a list
    of [B, S, S, c] arrays: the real faces first, then any rendered ones, taken as constants)
    with their `labels` ([B] each). `indices` [B] are the samples' global positions (dropout
    keys); gradients and metrics are averaged over `axis_name`.

    Metrics: loss/r_cls, acc/r_real (the first block), acc/r_synthetic (the rest, if any).
    """
    b = faces[0].shape[0]
    keep = None
    if on_trunk(recognizer):
        masks = keep_masks(key, indices, identity.width, len(faces))
        keep = masks.reshape(-1, masks.shape[-1])
    x = jnp.concatenate([faces[0]] + [lax.stop_gradient(f) for f in faces[1:]])
    y = jnp.concatenate(labels)

    def objective(r_params):
        _, logits = recognize(recognizer, identity, identity_params, r_params, x, keep)
        loss = losses.classification_loss(logits, y)
        metrics = {"loss/r_cls": loss, "acc/r_real": losses.accuracy(logits[:b], y[:b])}
        if len(faces) > 1:
            metrics["acc/r_synthetic"] = losses.accuracy(logits[b:], y[b:])
        return loss, metrics

    grads, metrics = jax.grad(objective, has_aux=True)(r.params)
    if axis_name is not None:
        grads = lax.pmean(grads, axis_name)
    return adam_step(r, grads, learning_rate, *betas), metrics
