"""Held-out evaluation of a training state: R accuracy, Dimg accuracy, reconstruction error."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fergan import losses
from fergan.training.networks import Networks
from fergan.training.state import TrainState, r_head_params, r_trunk_params, recognizer_trunk


@functools.partial(jax.jit, static_argnums=(0, 4))
def _evaluate_batch(nets: Networks, state: TrainState, x, y, off_value: float):
    """Per-example outputs on one batch: R logits and features, Dimg logits, |x - x_rec|."""
    trunk = recognizer_trunk(nets, r_trunk_params(nets, state.r.params, state.identity), x)
    features, r_logits = nets.recognizer.apply(
        {"params": r_head_params(nets, state.r.params)}, trunk
    )
    _, d_logits = nets.dimg.apply({"params": state.dimg.params}, x)
    # Reconstruction with the face's own expression at apex (inference form of u).
    u = losses.inference_code(y, jnp.ones(y.shape), nets.num_classes, off_value)
    x_rec = nets.generator.apply({"params": state.g.params}, x, u)
    rec = jnp.mean(jnp.abs(x - x_rec), axis=(1, 2, 3))
    d_pred = jnp.zeros_like(y) if d_logits is None else jnp.argmax(d_logits, -1)
    return {
        "r_pred": jnp.argmax(r_logits, -1),
        "r_feature": features,
        "dimg_pred": d_pred,
        "rec_error": rec,
    }


def predict(
    nets: Networks,
    state: TrainState,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 64,
    off_value: float = 0.5,
) -> dict[str, np.ndarray]:
    """Run `_evaluate_batch` over [N, S, S, c] images in fixed-size batches (last one padded, so
    one compiled program serves every batch). Returns per-example numpy arrays [N, ...]."""
    n = len(x)
    outs = []
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        pad = batch_size - len(xb)
        if pad:
            xb = np.concatenate([xb, np.repeat(xb[-1:], pad, 0)])
            yb = np.concatenate([yb, np.repeat(yb[-1:], pad, 0)])
        out = jax.device_get(_evaluate_batch(nets, state, xb, yb, off_value))
        outs.append({k: v[: batch_size - pad] for k, v in out.items()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def evaluate(
    nets: Networks,
    state: TrainState,
    arrays: dict[str, np.ndarray],
    with_dimg_cls: bool = True,
    batch_size: int = 64,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Held-out metrics (accuracies in [0, 1]) and the per-example predictions.

    arrays: `x` [N, S, S, c] in [-1, 1], `y` [N] (see fergan.data.pipeline.eval_arrays).
    """
    out = predict(nets, state, arrays["x"], arrays["y"], batch_size, nets.inference_off_value)
    y = arrays["y"]
    metrics = {
        "accuracy": float(np.mean(out["r_pred"] == y)),
        "rec_error": float(np.mean(out["rec_error"])),
        "num_examples": len(y),
    }
    if with_dimg_cls:
        metrics["dimg_accuracy"] = float(np.mean(out["dimg_pred"] == y))
    return metrics, out
