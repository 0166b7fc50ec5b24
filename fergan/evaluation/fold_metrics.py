"""Metrics of one trained fold: recognition (Table V, Fig. 8), synthesis quality (Table III),
identity verification of generated faces (Table IV), the R features behind Fig. 9, and the
training curves read back from the fold's TensorBoard events.

Everything here takes a trained `TrainState` and host arrays; the cross-validation driver
(`fergan.evaluation.cross_validate`) decides which fold and state to feed in.
"""

import functools
import glob
import os

import jax
import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from fergan.evaluation import evaluate as evaluation
from fergan.evaluation import metrics, synthesis
from fergan.models import LightCNN29, to_lightcnn_input
from fergan.training.networks import Networks
from fergan.training.state import TrainState

_BATCH = 32  # Images per generator / LightCNN call; the last batch is padded (one compile).


def batched_apply(fn, *arrays: np.ndarray, batch: int = _BATCH) -> np.ndarray:
    """Applies `fn` to [N, ...] arrays (sliced alike) in fixed-size padded batches and
    concatenates the outputs."""
    outs = []
    for start in range(0, len(arrays[0]), batch):
        parts = [a[start : start + batch] for a in arrays]
        pad = batch - len(parts[0])
        if pad:
            parts = [np.concatenate([p, np.repeat(p[-1:], pad, 0)]) for p in parts]
        outs.append(np.asarray(jax.device_get(fn(*parts)))[: batch - pad])
    return np.concatenate(outs)


def recognition_metrics(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> dict:
    """Accuracy, per-class accuracy and the confusion matrix of [N] predictions.

    Returns JSON-ready values: `accuracy` in [0, 1], `per_class_accuracy` [K] (None for a class
    absent from the test fold), `confusion_matrix` [K][K] counts (row = true class).
    """
    cm = metrics.confusion_matrix(labels, preds, num_classes)
    per_class = metrics.per_class_accuracy(cm)
    return {
        "accuracy": metrics.accuracy(labels, preds),
        "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
        "confusion_matrix": cm.tolist(),
        "num_examples": len(labels),
    }


def render_all(nets: Networks, g_params, x: np.ndarray, intensity: float = 1.0) -> np.ndarray:
    """Every face re-rendered with every expression: [N, S, S, c] -> [N, K, S, S, c], the other
    classes at the run's `model.inference_off_value`."""
    k, off = nets.num_classes, nets.inference_off_value
    return batched_apply(
        lambda xb: synthesis.render_expressions(nets.generator, g_params, xb, k, intensity, off), x
    )


def same_subject_pairs(labels: np.ndarray, subjects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) index pairs of faces of one subject with different expressions.

    Rendering source i with the expression of target j gives a face whose ground truth is j
    (same identity, same expression): the pairs of Table III. Returns two int arrays [P].
    """
    labels, subjects = np.asarray(labels), np.asarray(subjects)
    same_subject = subjects[:, None] == subjects[None, :]
    other_label = labels[:, None] != labels[None, :]
    src, tgt = np.nonzero(same_subject & other_label)
    return src.astype(np.int64), tgt.astype(np.int64)


def synthesis_metrics(
    renders: np.ndarray, x: np.ndarray, labels: np.ndarray, subjects: np.ndarray
) -> dict:
    """PSNR and SSIM (Table III) of generated faces against the real face of the same subject
    with the target expression.

    Args:
        renders: [N, K, S, S, c] from `render_all` (face i with expression k).
        x: [N, S, S, c] the real faces in [-1, 1]; labels, subjects: [N].

    Returns:
        `psnr` (dB) and `ssim` averaged over the pairs, `num_pairs`; None values when the split
        has no subject with two expressions.
    """
    src, tgt = same_subject_pairs(labels, subjects)
    if len(src) == 0:
        return {"psnr": None, "ssim": None, "num_pairs": 0}
    generated = renders[src, np.asarray(labels)[tgt]]
    real = x[tgt]
    # Chunks bound the memory of SSIM's filtered copies at 128 px.
    chunks = [(generated[i : i + 256], real[i : i + 256]) for i in range(0, len(src), 256)]
    psnr = np.concatenate([np.asarray(metrics.psnr(a, b)) for a, b in chunks])
    ssim = np.concatenate([np.asarray(metrics.ssim(a, b)) for a, b in chunks])
    return {
        "psnr": float(np.mean(psnr)),
        "ssim": float(np.mean(ssim)),
        "num_pairs": len(src),
    }


@functools.partial(jax.jit, static_argnums=0)
def _identity_feature(model: LightCNN29, params, x: jax.Array) -> jax.Array:
    return model.apply({"params": params}, to_lightcnn_input(x), method=LightCNN29.identity_feature)


def identity_features(nets: Networks, identity_params, x: np.ndarray) -> np.ndarray:
    """F_id of [N, S, S, c] faces in [-1, 1] -> [N, 256*width] (the run's frozen LightCNN-29)."""
    return batched_apply(lambda xb: _identity_feature(nets.identity, identity_params, xb), x)


def verification_pairs(
    real_features: np.ndarray, generated_features: np.ndarray, subjects: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real-vs-generated pairs of Table IV: each real face i against its own K renders (same
    identity) and the K renders of one face of another subject (different identity).

    Args:
        real_features: [N, D] F_id of the real faces.
        generated_features: [N, K, D] F_id of every face rendered with every expression.
        subjects: [N] subject ids (at least two distinct).
        seed: picks the other-subject face of each i.

    Returns:
        (a [2NK, D], b [2NK, D], same [2NK] bool).
    """
    subjects = np.asarray(subjects)
    n, k = generated_features.shape[:2]
    rng = np.random.default_rng([seed, 0x1D7])
    partner = np.array([rng.choice(np.flatnonzero(subjects != subjects[i])) for i in range(n)])
    a = np.repeat(real_features, 2 * k, axis=0)
    b = np.concatenate([generated_features, generated_features[partner]], axis=1)
    same = np.tile(np.repeat([True, False], k), n)
    return a, b.reshape(2 * n * k, -1), same


def verification_metrics(train: tuple, test: tuple, seed: int) -> dict | None:
    """Verification rate on the test fold with the threshold that is best on the training fold.

    Args:
        train, test: (real_features [N, D], generated_features [N, K, D], subjects [N]).
        seed: pair sampling seed.

    Returns:
        `rate` (test, in [0, 1]), `threshold` (cosine similarity), `train_rate`, `num_pairs`
        (test); None when either split has fewer than two subjects.
    """
    if any(len(np.unique(split[2])) < 2 for split in (train, test)):
        return None
    train_pairs = verification_pairs(*train, seed)
    test_pairs = verification_pairs(*test, seed)
    threshold = metrics.choose_threshold(*train_pairs)
    return {
        "rate": metrics.verification_rate(*test_pairs, threshold),
        "threshold": threshold,
        "train_rate": metrics.verification_rate(*train_pairs, threshold),
        "num_pairs": len(test_pairs[2]),
    }


def recognition_features(
    nets: Networks, state: TrainState, x: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Rext features [N, 512*width] of faces [N, S, S, c] (the space of Fig. 9)."""
    return evaluation.predict(nets, state, x, labels)["r_feature"]


def synthetic_faces(
    nets: Networks, g_params, per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """x_pf = Gdec([z, u(k)]) for `per_class` random z and every class k at apex, the other
    classes at the run's `model.inference_off_value`.

    Returns (faces [per_class * K, S, S, c], labels [per_class * K]).
    """
    k = nets.num_classes
    key = jax.random.PRNGKey(seed)
    faces = synthesis.prior_faces(
        nets.generator, g_params, key, per_class, k, nets.latent_dim, nets.inference_off_value
    )
    faces = np.asarray(faces).reshape(per_class * k, *faces.shape[2:])
    return faces, np.tile(np.arange(k, dtype=np.int32), per_class)


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """Scalar series of every TensorBoard event file in `logdir` (not its subfolders).

    A resumed run logs the steps after its last checkpoint twice; the later value of a step
    wins. Returns tag -> [(step, value)] sorted by step.
    """
    out: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        acc = event_accumulator.EventAccumulator(
            path, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0}
        )
        acc.Reload()
        # clu writes TF2 summaries (tensors); older writers use simple values (scalars).
        for tag in acc.PluginTagToContent("scalars"):
            series = out.setdefault(tag, {})
            for event in acc.Tensors(tag):
                series[event.step] = float(tensor_util.make_ndarray(event.tensor_proto))
        for tag in acc.Tags().get("scalars", []):
            series = out.setdefault(tag, {})
            for event in acc.Scalars(tag):
                series[event.step] = float(event.value)
    return {tag: sorted(series.items()) for tag, series in sorted(out.items()) if series}
