"""Judge metrics on constructed editors and judges whose scores are known in closed form."""

import numpy as np
import pytest

from fergan.evaluation import edit_metrics

K = 5
SUBJECTS = 12


def _faces():
    """One face per (subject, class); pixel 0 holds the class, pixel 1 the subject."""
    s, y = np.meshgrid(np.arange(SUBJECTS), np.arange(K), indexing="ij")
    s, y = s.ravel(), y.ravel()
    x = np.zeros((len(y), 4, 4, 1), np.float32)
    x[:, 0, 0, 0], x[:, 0, 1, 0] = y, s
    return x, y, s


def _judge(images):
    """Reads the class from pixel 0 but mistakes it for the next class on a fixed third of the
    (subject, class) faces; soft probabilities [N, K]."""
    y = images[:, 0, 0, 0].astype(int)
    s = images[:, 0, 1, 0].astype(int)
    wrong = (s + y) % 3 == 0
    pred = np.where(wrong, (y + 1) % K, y)
    return 0.1 / K + 0.9 * np.eye(K)[pred]


def _true_face_editor(x, labels, intensities, landmarks=None):
    """The subject's real face with the target class."""
    del intensities
    faces, y, s = _faces()
    table = {(int(si), int(yi)): f for f, yi, si in zip(faces, y, s, strict=True)}
    return np.stack([table[(int(f[0, 1, 0]), int(b))] for f, b in zip(x, labels, strict=True)])


def test_true_face_editor_scores_the_real_judge_accuracy():
    x, y, _ = _faces()
    real = edit_metrics.judge_accuracy_real(_judge, x, y)
    assert real == pytest.approx(np.mean(_judge(x).argmax(-1) == y))
    assert 0.5 < real < 0.8  # The constructed judge does err.
    assert edit_metrics.edit_accuracy(_true_face_editor, _judge, x, y, K) == pytest.approx(real)


def test_unchanged_input_scores_the_judge_error_spread_over_the_other_classes():
    x, y, _ = _faces()
    real = edit_metrics.judge_accuracy_real(_judge, x, y)
    unchanged = edit_metrics.edit_accuracy(lambda x, b, a, landmarks=None: x, _judge, x, y, K)
    assert unchanged == pytest.approx((1 - real) / (K - 1))


def test_excluded_classes_are_neither_targets_nor_judged_faces():
    x, y, _ = _faces()
    classes = [0, 1, 2, 3]  # The judge cannot name class 4.
    src, tgt = edit_metrics.edit_pairs(y, np.asarray(classes))
    assert 4 not in tgt and len(src) == len(y) * len(classes) - np.isin(y, classes).sum()
    keep = y != 4
    pred = _judge(x[keep])[:, classes].argmax(-1)
    assert edit_metrics.judge_accuracy_real(_judge, x, y, classes) == pytest.approx(
        np.mean(pred == y[keep])
    )


def _intensity_editor(x, labels, intensities, landmarks=None):
    """Image = (target, intensity): a judge reading them gives p_target = intensity."""
    out = np.zeros_like(x)
    out[:, 0, 0, 0], out[:, 0, 1, 0] = labels, intensities
    return out


def _intensity_judge(images):
    b, a = images[:, 0, 0, 0].astype(int), images[:, 0, 1, 0]
    probs = np.full((len(b), K), 0.0)
    probs[np.arange(len(b)), b] = a
    return probs


def test_intensity_response_follows_the_requested_intensity():
    x, _, _ = _faces()
    a = edit_metrics.INTENSITIES
    response = edit_metrics.intensity_response(_intensity_editor, _intensity_judge, x, [0, 2], a)
    assert response.shape == (len(x), 2, len(a))
    np.testing.assert_allclose(response, np.broadcast_to(a, response.shape))
    assert edit_metrics.intensity_spearman(response) == pytest.approx(1.0)
    assert edit_metrics.intensity_gap(response) == pytest.approx(1.0)


def test_spearman_and_gap_on_rising_falling_and_flat_curves():
    a = np.asarray(edit_metrics.INTENSITIES)
    rising = 0.1 + 0.5 * a**2  # Monotone but not linear: Spearman 1.
    falling = rising[::-1]
    flat = np.full_like(a, 0.3)  # An edit that ignores the intensity.
    response = np.stack([rising, falling, flat])[None]  # [1, 3, A]
    assert edit_metrics.intensity_spearman(response[:, :1]) == pytest.approx(1.0)
    assert edit_metrics.intensity_spearman(response[:, 1:2]) == pytest.approx(-1.0)
    assert edit_metrics.intensity_spearman(response[:, 2:]) == 0.0
    assert edit_metrics.intensity_spearman(response) == pytest.approx(0.0)
    assert edit_metrics.intensity_gap(response) == pytest.approx((0.5 - 0.5 + 0.0) / 3)


def test_linear_probe_finds_a_linear_cue_and_not_a_missing_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(0, 1, (300, 6, 6, 1)).astype(np.float32)
    x[np.arange(300), y, 0, 0] += 4.0  # Class c brightens pixel (c, 0).
    train, test = slice(0, 200), slice(200, None)
    acc = edit_metrics.linear_probe_accuracy(x[train], y[train], x[test], y[test])
    assert acc > 0.95
    noise = rng.normal(0, 1, x.shape).astype(np.float32)
    assert edit_metrics.linear_probe_accuracy(noise[train], y[train], noise[test], y[test]) < 0.6
