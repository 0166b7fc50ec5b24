"""Face verification metrics for identity features, by cosine similarity."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def _cosine_matrix(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {f.shape}.")
    # Zero vectors get similarity 0 with everything rather than NaN.
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return f @ f.T


def _subjects(subjects, n: int) -> np.ndarray:
    s = np.asarray(subjects)
    if s.shape != (n,):
        raise ValueError(f"subjects must have shape ({n},), got {s.shape}.")
    return s


def verification_auc(features: np.ndarray, subjects: np.ndarray) -> float:
    """ROC AUC of cosine similarity for same- vs different-subject pairs.

    Args:
      features: [N, D] identity features.
      subjects: [N] subject ids.

    Returns:
      AUC over all N(N-1)/2 pairs (1.0: every same-subject pair is more similar than every
      different-subject pair; 0.5: chance).

    Raises:
      ValueError: there is no same-subject pair or no different-subject pair.
    """
    sim = _cosine_matrix(features)
    s = _subjects(subjects, len(sim))
    i, j = np.triu_indices(len(s), k=1)
    same = s[i] == s[j]
    if not same.any() or same.all():
        raise ValueError(
            "verification_auc needs at least one same-subject and one different-subject pair; "
            f"got {len(s)} samples of {len(np.unique(s))} subjects."
        )
    return float(roc_auc_score(same, sim[i, j]))


def rank1_accuracy(features: np.ndarray, subjects: np.ndarray) -> float:
    """Leave-one-out nearest neighbour (cosine) identification accuracy.

    Each sample queries all others; queries whose subject has no other sample are skipped.

    Args:
      features: [N, D]; subjects: [N].

    Raises:
      ValueError: no subject has two samples.
    """
    sim = _cosine_matrix(features)
    s = _subjects(subjects, len(sim))
    np.fill_diagonal(sim, -np.inf)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    queries = counts[inverse] > 1
    if not queries.any():
        raise ValueError("rank1_accuracy needs a subject with at least two samples.")
    nearest = sim.argmax(axis=1)
    return float(np.mean(s[nearest][queries] == s[queries]))
