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


# Pairs of faces with a threshold (Table IV): the verification rate of generated faces.


def cosine_similarity(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise cosine similarity of paired features.

    Args:
        a, b: [N, D] features (e.g. LightCNN-29 256-d identity features).
        eps: floor on the norms, so an all-zero feature gives similarity 0, not NaN.

    Returns:
        [N] float64 similarities in [-1, 1].
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two [N, D] arrays of one shape, got {a.shape} and {b.shape}")
    na = np.maximum(np.linalg.norm(a, axis=1), eps)
    nb = np.maximum(np.linalg.norm(b, axis=1), eps)
    return np.sum(a * b, axis=1) / (na * nb)


def _pair_arrays(
    feats_a: np.ndarray, feats_b: np.ndarray, same: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    sims = cosine_similarity(feats_a, feats_b)
    same = np.asarray(same, dtype=bool).reshape(-1)
    if same.shape != sims.shape:
        raise ValueError(f"same has {same.shape[0]} entries for {sims.shape[0]} pairs")
    if same.size == 0:
        raise ValueError("no pairs")
    return sims, same


def verification_rate(
    feats_a: np.ndarray, feats_b: np.ndarray, same: np.ndarray, threshold: float
) -> float:
    """Face verification accuracy of a cosine-similarity threshold.

    A pair is declared "same identity" when its cosine similarity is >= ``threshold``; the
    rate is the fraction of pairs where that decision matches ``same``.

    Args:
        feats_a, feats_b: [N, D] identity features of the two images of each pair.
        same: [N] bool, True where the pair shares an identity.
        threshold: cosine-similarity threshold (from ``choose_threshold`` on training pairs).

    Returns:
        Verification rate in [0, 1].
    """
    sims, same = _pair_arrays(feats_a, feats_b, same)
    return float(np.mean((sims >= threshold) == same))


def choose_threshold(feats_a: np.ndarray, feats_b: np.ndarray, same: np.ndarray) -> float:
    """Cosine-similarity threshold that maximises verification accuracy on the given pairs.

    Meant for the training fold's pairs; apply the result to the test fold with
    ``verification_rate``. Every distinct cut between sorted similarities is scored in
    O(N log N). The returned threshold is the midpoint of the best gap (a margin on both
    sides), or 1 below the smallest / above the largest similarity when accepting all /
    rejecting all pairs is best. Ties go to the lowest threshold.

    Args:
        feats_a, feats_b: [N, D] identity features of the two images of each pair.
        same: [N] bool, True where the pair shares an identity.

    Returns:
        The threshold (float).
    """
    sims, same = _pair_arrays(feats_a, feats_b, same)
    order = np.argsort(sims, kind="stable")
    s = sims[order]
    pos = same[order].astype(np.int64)
    # Cut i (0..N) accepts s[i:], rejects s[:i]. Cuts inside runs of equal similarities are
    # not realisable by any threshold, so only cuts at value changes (and both ends) count.
    neg_rejected = np.concatenate([[0], np.cumsum(1 - pos)])
    pos_accepted = pos.sum() - np.concatenate([[0], np.cumsum(pos)])
    correct = neg_rejected + pos_accepted
    n = s.size
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = s[1:] > s[:-1]
    best = int(np.flatnonzero(valid)[np.argmax(correct[valid])])
    if best == 0:
        return float(s[0] - 1.0)
    if best == n:
        return float(s[-1] + 1.0)
    return float(0.5 * (s[best - 1] + s[best]))
