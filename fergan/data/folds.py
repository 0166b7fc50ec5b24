"""Subject-independent k-fold cross-validation splits."""

from __future__ import annotations

import numpy as np


def subject_folds(subjects: np.ndarray, num_folds: int, seed: int) -> list[np.ndarray]:
    """Partitions the distinct subject ids into `num_folds` test groups.

    Subjects are permuted with a generator seeded by `seed` and dealt into near-equal groups, so
    the result depends only on the set of ids, `num_folds` and `seed` (not on example order).

    Args:
      subjects: int [N] subject id of every example (repeats allowed).
      num_folds: k >= 2.
      seed: fold seed.

    Returns:
      k sorted int arrays of subject ids; each subject is in exactly one.
    """
    unique = np.unique(np.asarray(subjects))
    if num_folds < 2:
        raise ValueError(f"data.num_folds must be >= 2, got {num_folds}.")
    if len(unique) < num_folds:
        raise ValueError(
            f"data.num_folds={num_folds} exceeds the {len(unique)} distinct subjects in the "
            "dataset; use at most that many folds."
        )
    order = np.random.default_rng([seed, 0xF01D]).permutation(len(unique))
    return [np.sort(unique[part]) for part in np.array_split(order, num_folds)]


def fold_indices(
    subjects: np.ndarray, num_folds: int, fold: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Example indices of fold `fold`: (train, test), sharing no subject.

    Args:
      subjects: int [N] subject id of every example.

    Returns:
      Two sorted int64 index arrays into `subjects`.
    """
    if not 0 <= fold < num_folds:
        raise ValueError(f"data.fold must be in [0, {num_folds - 1}], got {fold}.")
    subjects = np.asarray(subjects)
    test_subjects = subject_folds(subjects, num_folds, seed)[fold]
    is_test = np.isin(subjects, test_subjects)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)
