"""Expression-edit metrics measured by an independent judge (issue "An independent judge").

Pure functions of two callables, so they can be checked on constructed cases:
  editor(x [N, H, W, C], labels [N] int, intensities [N]) -> images [N, H, W, C]
    (the generator re-rendering face i with class labels[i] at intensities[i]);
  judge(images [N, H, W, C]) -> probabilities [N, K] over the dataset's classes.
`classes` lists the dataset classes the judge can name (a FER2013 judge has no contempt); the
others are left out as targets and as real faces to judge.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

from fergan.data import separability
from fergan.types import Editor

JudgeFn = Callable[[np.ndarray], np.ndarray]

INTENSITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _classes(num_classes: int, classes: Sequence[int] | None) -> np.ndarray:
    return np.arange(num_classes) if classes is None else np.asarray(classes, np.int64)


def _rows(landmarks: np.ndarray | None, index: np.ndarray) -> np.ndarray | None:
    """The landmarks of the faces x[index] (None stays None: the editor ignores them)."""
    return None if landmarks is None else np.asarray(landmarks)[index]


def _decide(probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Judge's class [N] among `classes` only (others can never be chosen)."""
    return classes[np.argmax(probs[:, classes], axis=-1)]


def judge_accuracy_real(
    judge: JudgeFn, x: np.ndarray, y: np.ndarray, classes: Sequence[int] | None = None
) -> float | None:
    """Accuracy of the judge on real faces x [N, H, W, C] with labels y [N] in `classes`.

    The ceiling of `edit_accuracy`: an editor cannot look more like class b to the judge than the
    subject's real face of class b does. None when no face has a judged class.
    """
    probs = judge(x)
    classes = _classes(probs.shape[1], classes)
    keep = np.isin(y, classes)
    if not keep.any():
        return None
    return float(np.mean(_decide(probs[keep], classes) == y[keep]))


def edit_pairs(y: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (face i, target b) with b in `classes` and b != y[i] (y[i] = -1, a neutral face: every
    b): (sources [P], targets [P])."""
    src = np.repeat(np.arange(len(y)), len(classes))
    tgt = np.tile(classes, len(y))
    keep = tgt != y[src]
    return src[keep], tgt[keep]


def edit_accuracy(
    editor: Editor,
    judge: JudgeFn,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    classes: Sequence[int] | None = None,
    landmarks: np.ndarray | None = None,
) -> float | None:
    """Fraction of edits G(x_i, b) at intensity 1 that the judge labels b, over every face i and
    every judged target b other than its own class.

    Returning the subject's real face of class b scores `judge_accuracy_real`; returning x_i
    unchanged scores (1 - judge accuracy) / (K - 1) (tests/evaluation/test_edit_metrics.py).
    """
    classes = _classes(num_classes, classes)
    src, tgt = edit_pairs(np.asarray(y), classes)
    if len(src) == 0:
        return None
    edits = editor(x[src], tgt, np.ones(len(src), np.float32), landmarks=_rows(landmarks, src))
    return float(np.mean(_decide(judge(edits), classes) == tgt))


def intensity_response(
    editor: Editor,
    judge: JudgeFn,
    x: np.ndarray,
    classes: Sequence[int],
    intensities: Sequence[float] = INTENSITIES,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """Judge's probability of class b for G(x_i, b, a): [N, B, A] over faces, `classes`, and
    `intensities`; `landmarks` [N, 68, 2] of x go to the editor."""
    classes, a = np.asarray(classes, np.int64), np.asarray(intensities, np.float32)
    n, nb, na = len(x), len(classes), len(a)
    src = np.repeat(np.arange(n), nb * na)
    tgt = np.tile(np.repeat(classes, na), n)
    probs = judge(editor(x[src], tgt, np.tile(a, n * nb), landmarks=_rows(landmarks, src)))
    return probs[np.arange(len(src)), tgt].reshape(n, nb, na)


def intensity_spearman(response: np.ndarray, intensities: Sequence[float] = INTENSITIES) -> float:
    """Mean Spearman correlation between intensity and p_b over the [N, B, A] response curves.

    A flat curve (the edit ignores the intensity) has no rank order and counts as 0.
    """
    ranks = stats.rankdata(response, axis=-1)
    a = stats.rankdata(np.asarray(intensities))
    ranks = ranks - ranks.mean(-1, keepdims=True)
    a = a - a.mean()
    denom = np.sqrt((ranks**2).sum(-1) * (a**2).sum())
    rho = np.divide((ranks * a).sum(-1), denom, out=np.zeros(denom.shape), where=denom > 0)
    return float(rho.mean())


def intensity_gap(response: np.ndarray, intensities: Sequence[float] = INTENSITIES) -> float:
    """Mean p_b(a = 1) - p_b(a = 0) over the [N, B, A] response curves (lowest to highest
    intensity)."""
    a = np.asarray(intensities)
    return float(np.mean(response[..., np.argmax(a)] - response[..., np.argmin(a)]))


def linear_probe_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> float:
    """Held-out accuracy of a pixel logistic regression (fergan.data.separability.pixel_probe)
    fitted on the training faces [M, H, W, C] and tested on test faces [N, H, W, C]."""
    probe = separability.pixel_probe(train_x.reshape(len(train_x), -1), train_y)
    return float(np.mean(probe.predict(test_x.reshape(len(test_x), -1)) == test_y))
