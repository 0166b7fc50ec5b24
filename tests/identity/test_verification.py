"""Verification metrics: AUC over same/different pairs and leave-one-out rank-1."""

import numpy as np
import pytest

from fergan.identity.verification import rank1_accuracy, verification_auc


def test_identical_features_per_subject_are_perfect():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(5, 16))
    subjects = np.repeat(np.arange(5), 4)
    features = centers[subjects]
    assert verification_auc(features, subjects) == 1.0
    assert rank1_accuracy(features, subjects) == 1.0


def test_random_features_are_at_chance():
    rng = np.random.default_rng(1)
    subjects = np.repeat(np.arange(40), 5)
    auc = verification_auc(rng.normal(size=(200, 32)), subjects)
    assert abs(auc - 0.5) < 0.05
    assert rank1_accuracy(rng.normal(size=(200, 32)), subjects) < 0.2


def test_separable_noisy_features():
    rng = np.random.default_rng(2)
    subjects = np.repeat(np.arange(6), 5)
    features = rng.normal(size=(6, 8))[subjects] * 3 + rng.normal(size=(30, 8))
    assert verification_auc(features, subjects) > 0.9


def test_rank1_skips_singleton_queries():
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    # Subject 7 has one sample: it cannot be identified and is not a query.
    assert rank1_accuracy(features, np.array([3, 3, 7])) == 1.0


def test_degenerate_inputs_raise():
    with pytest.raises(ValueError, match="same-subject"):
        verification_auc(np.eye(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="same-subject"):
        verification_auc(np.eye(3), np.array([0, 0, 0]))
    with pytest.raises(ValueError, match="at least two samples"):
        rank1_accuracy(np.eye(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="subjects must have shape"):
        verification_auc(np.eye(3), np.array([0, 1]))
