"""Metrics of one trained fold: recognition (Table V, Fig. 8), synthesis quality (Table III),
identity verification of generated faces (Table IV), the R features behind Fig. 9, and the
training curves read back from the fold's TensorBoard events.

Everything here takes host arrays and a method's functions (an editor, identity features);
the cross-validation driver (`fergan.experiments.cross_validate`) decides which fold and state
to feed in.
"""

import glob
import os

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from fergan.evaluation import measures
from fergan.identity import verification
from fergan.types import Editor, FeatureFn


def recognition_metrics(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> dict:
    """Accuracy, per-class accuracy and the confusion matrix of [N] predictions.

    Returns JSON-ready values: `accuracy` in [0, 1], `per_class_accuracy` [K] (None for a class
    absent from the test fold), `confusion_matrix` [K][K] counts (row = true class).
    """
    cm = measures.confusion_matrix(labels, preds, num_classes)
    per_class = measures.per_class_accuracy(cm)
    return {
        "accuracy": measures.accuracy(labels, preds),
        "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
        "confusion_matrix": cm.tolist(),
        "num_examples": len(labels),
    }


def render_all(
    editor: Editor,
    x: np.ndarray,
    num_classes: int,
    intensity: float = 1.0,
    landmarks: np.ndarray | None = None,
):
    """Every face re-rendered with every expression: [N, S, S, c] -> [N, K, S, S, c];
    `landmarks` [N, 68, 2] of x go to the editor."""
    n = len(x)
    labels = np.tile(np.arange(num_classes, dtype=np.int32), n)
    faces = np.repeat(x, num_classes, axis=0)
    marks = None if landmarks is None else np.repeat(landmarks, num_classes, axis=0)
    out = editor(faces, labels, np.full(n * num_classes, intensity, np.float32), landmarks=marks)
    return out.reshape(n, num_classes, *x.shape[1:])


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
    renders: np.ndarray,
    x: np.ndarray,
    labels: np.ndarray,
    subjects: np.ndarray,
    sources: dict | None = None,
) -> dict:
    """PSNR and SSIM (Table III) of generated faces against the real face of the same subject
    with the target expression.

    Args:
        renders: [N, K, S, S, c] from `render_all` (face i with expression k).
        x: [N, S, S, c] the real faces in [-1, 1]; labels, subjects: [N].
        sources: the rendered faces' own `y` and `subject` [M] when they are not the real faces
            `x` (renders [M, K, ...]; y = -1, a neutral face, pairs with every expression).

    Returns:
        `psnr` (dB) and `ssim` averaged over the pairs, `num_pairs`; None values when the split
        has no subject with two expressions.
    """
    if sources is None:
        src, tgt = same_subject_pairs(labels, subjects)
    else:
        same_subject = np.asarray(sources["subject"])[:, None] == np.asarray(subjects)[None, :]
        other_label = np.asarray(sources["y"])[:, None] != np.asarray(labels)[None, :]
        src, tgt = np.nonzero(same_subject & other_label)
    if len(src) == 0:
        return {"psnr": None, "ssim": None, "num_pairs": 0}
    generated = renders[src, np.asarray(labels)[tgt]]
    real = x[tgt]
    # Chunks bound the memory of SSIM's filtered copies at 128 px.
    chunks = [(generated[i : i + 256], real[i : i + 256]) for i in range(0, len(src), 256)]
    psnr = np.concatenate([np.asarray(measures.psnr(a, b)) for a, b in chunks])
    ssim = np.concatenate([np.asarray(measures.ssim(a, b)) for a, b in chunks])
    return {
        "psnr": float(np.mean(psnr)),
        "ssim": float(np.mean(ssim)),
        "num_pairs": len(src),
    }


def identity_split(features: FeatureFn, x: np.ndarray, subjects: np.ndarray, renders: np.ndarray):
    """(identity features of real faces [N, D], of their renders [N, K, D], subjects [N])."""
    n, k = renders.shape[:2]
    generated = features(renders.reshape(n * k, *renders.shape[2:]))
    return features(x), generated.reshape(n, k, -1), subjects


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
    threshold = verification.choose_threshold(*train_pairs)
    return {
        "rate": verification.verification_rate(*test_pairs, threshold),
        "threshold": threshold,
        "train_rate": verification.verification_rate(*train_pairs, threshold),
        "num_pairs": len(test_pairs[2]),
    }


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
