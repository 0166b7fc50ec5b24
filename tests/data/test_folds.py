"""Subject-independent folds."""

from __future__ import annotations

import numpy as np
import pytest

from fergan.data import folds


def _subjects():
    rng = np.random.default_rng(3)
    return rng.choice(np.arange(100, 123), size=400)  # 23 subjects, uneven counts.


def test_no_overlap_and_full_cover():
    subjects = _subjects()
    seen = []
    for fold in range(10):
        train, test = folds.fold_indices(subjects, 10, fold, seed=0)
        assert not set(subjects[train]) & set(subjects[test])
        assert len(train) + len(test) == len(subjects)
        seen += list(np.unique(subjects[test]))
    assert sorted(seen) == sorted(np.unique(subjects))  # Each subject tested exactly once.
    sizes = [len(g) for g in folds.subject_folds(subjects, 10, 0)]
    assert max(sizes) - min(sizes) <= 1


def test_stable_and_seeded():
    subjects = _subjects()
    a = folds.subject_folds(subjects, 5, seed=7)
    b = folds.subject_folds(subjects[::-1].copy(), 5, seed=7)  # Order of examples irrelevant.
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = folds.subject_folds(subjects, 5, seed=8)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_too_few_subjects_and_bad_fold():
    with pytest.raises(ValueError, match=r"data.num_folds=10 exceeds the 3 distinct subjects"):
        folds.subject_folds(np.array([1, 1, 2, 3]), 10, 0)
    with pytest.raises(ValueError, match=r"data.fold must be in \[0, 2\], got 3"):
        folds.fold_indices(np.arange(6), 3, 3, 0)
