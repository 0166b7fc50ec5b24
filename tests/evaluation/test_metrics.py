"""Image-quality metrics against scikit-image; recognition and verification metrics."""

import jax
import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from fergan.evaluation import measures as metrics
from fergan.identity import verification

TOL = 1e-4


def _sk_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    return structural_similarity(
        a.astype(np.float64),
        b.astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
        channel_axis=-1,
    )


def _sk_psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    return peak_signal_noise_ratio(
        a.astype(np.float64), b.astype(np.float64), data_range=data_range
    )


def _check_against_skimage(a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> None:
    got_ssim = np.asarray(metrics.ssim(a, b, data_range))
    got_psnr = np.asarray(metrics.psnr(a, b, data_range))
    assert got_ssim.shape == got_psnr.shape == (a.shape[0],)
    want_ssim = [_sk_ssim(x, y, data_range) for x, y in zip(a, b, strict=True)]
    want_psnr = [_sk_psnr(x, y, data_range) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(got_ssim, want_ssim, atol=TOL, rtol=0)
    np.testing.assert_allclose(got_psnr, want_psnr, atol=TOL, rtol=0)


def _structured(rng: np.random.Generator, size: int, channels: int) -> np.ndarray:
    """A smooth gradient with a bright disc and a dark rectangle, in [-1, 1]."""
    v, u = np.mgrid[0:size, 0:size] / (size - 1)
    img = 0.8 * (u * rng.uniform(-1, 1) + v * rng.uniform(-1, 1))
    cu, cv, r = rng.uniform(0.3, 0.7, 3) * [1, 1, 0.4]
    img = np.where((u - cu) ** 2 + (v - cv) ** 2 < r**2, 0.9, img)
    top, left = rng.integers(0, size // 2, 2)
    img[top : top + size // 4, left : left + size // 3] = -0.9
    out = np.stack([np.roll(img, c, axis=1) for c in range(channels)], axis=-1)
    return np.clip(out, -1, 1).astype(np.float32)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_random_images_match_skimage(size, channels):
    rng = np.random.default_rng(size + channels)
    a = rng.uniform(-1, 1, (3, size, size, channels)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.4, a.shape), -1, 1).astype(np.float32)
    _check_against_skimage(a, b)
    # Unrelated images: SSIM near 0, exercising the low end.
    _check_against_skimage(a, rng.uniform(-1, 1, a.shape).astype(np.float32))


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_structured_images_match_skimage(size, channels):
    rng = np.random.default_rng(10 * size + channels)
    a = np.stack([_structured(rng, size, channels) for _ in range(3)])
    blurred = ndimage.gaussian_filter(a, sigma=(0, 1.2, 1.2, 0))
    noisy = np.clip(a + rng.normal(0, 0.05, a.shape), -1, 1).astype(np.float32)
    shifted = np.roll(a, 2, axis=2)
    _check_against_skimage(a, blurred.astype(np.float32))
    _check_against_skimage(a, noisy)
    _check_against_skimage(a, shifted)
    _check_against_skimage(blurred.astype(np.float32), noisy)


def test_border_handling_matches_skimage_cropping():
    # Images that differ most near the border: the value depends on which border pixels enter
    # the average, so any mismatch in cropping or padding shows up.
    rng = np.random.default_rng(3)
    size = 32
    a = ndimage.gaussian_filter(rng.uniform(-1, 1, (2, size, size, 1)), (0, 2, 2, 0))
    b = a.copy()
    frame = np.ones((size, size), bool)
    frame[3:-3, 3:-3] = False
    b[:, frame] = rng.uniform(-1, 1, (2, int(frame.sum()), 1))
    _check_against_skimage(a.astype(np.float32), b.astype(np.float32))
    # Differences only in the outermost pixel still reach windows centred 5 px in.
    c = a.copy()
    c[:, 0, :, :] = 1.0
    c[:, :, -1, :] = -1.0
    got = float(metrics.ssim(a, c)[0])
    assert got < 1.0
    assert got == pytest.approx(_sk_ssim(a[0], c[0], 2.0), abs=TOL)


def test_other_data_range_and_uint8_inputs():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    _check_against_skimage(a, b, data_range=255.0)


def test_identity_and_batch_independence():
    rng = np.random.default_rng(5)
    a = rng.uniform(-1, 1, (4, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(metrics.ssim(a, a)), 1.0, atol=1e-6)
    assert np.all(np.isinf(np.asarray(metrics.psnr(a, a))))
    b = rng.uniform(-1, 1, a.shape).astype(np.float32)
    whole = np.asarray(metrics.ssim(a, b))
    singles = [float(metrics.ssim(a[i : i + 1], b[i : i + 1])[0]) for i in range(4)]
    np.testing.assert_allclose(whole, singles, atol=1e-6)


def test_metrics_trace_under_outer_jit():
    rng = np.random.default_rng(6)
    a = rng.uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    b = rng.uniform(-1, 1, a.shape).astype(np.float32)
    both = jax.jit(lambda x, y: (metrics.psnr(x, y), metrics.ssim(x, y)))
    p, s = both(a, b)
    np.testing.assert_allclose(np.asarray(p), np.asarray(metrics.psnr(a, b)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(s), np.asarray(metrics.ssim(a, b)), rtol=1e-6)


def test_ssim_rejects_small_or_mismatched_images():
    with pytest.raises(ValueError, match="smaller"):
        metrics.ssim(np.zeros((1, 8, 8, 1)), np.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match="differ"):
        metrics.ssim(np.zeros((1, 32, 32, 1)), np.zeros((1, 32, 32, 3)))


# ---------------------------------------------------------------------------------------------
# Recognition
# ---------------------------------------------------------------------------------------------


def test_confusion_matrix_and_accuracies():
    rng = np.random.default_rng(7)
    K = 7
    labels = rng.integers(0, K, 500)
    preds = np.where(rng.random(500) < 0.7, labels, rng.integers(0, K, 500))
    cm = metrics.confusion_matrix(labels, preds, K)
    np.testing.assert_array_equal(cm, sk_confusion_matrix(labels, preds, labels=range(K)))
    per_class = metrics.per_class_accuracy(cm)
    for k in range(K):
        assert per_class[k] == pytest.approx(np.mean(preds[labels == k] == k))
    assert metrics.accuracy(labels, preds) == pytest.approx(np.mean(labels == preds))
    assert metrics.accuracy(labels, preds) == pytest.approx(np.trace(cm) / cm.sum())


def test_per_class_accuracy_is_nan_for_absent_class():
    cm = metrics.confusion_matrix([0, 0, 2], [0, 1, 2], 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 0, 0], [0, 0, 1]])
    acc = metrics.per_class_accuracy(cm)
    assert acc[0] == 0.5 and np.isnan(acc[1]) and acc[2] == 1.0


def test_confusion_matrix_rejects_out_of_range():
    with pytest.raises(ValueError):
        metrics.confusion_matrix([0, 3], [0, 1], 3)


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------


def test_cosine_similarity():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    b = np.array([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(
        verification.cosine_similarity(a, b), [0.0, 1.0, -1.0, 0.0], atol=1e-12
    )


def _pairs(rng, n, dim, identical_same):
    same = rng.random(n) < 0.5
    a = rng.normal(size=(n, dim))
    b = rng.normal(size=(n, dim))
    if identical_same:
        b[same] = a[same]
    return a, b, same


def test_identical_features_verify_perfectly():
    rng = np.random.default_rng(8)
    train = _pairs(rng, 400, 256, identical_same=True)
    test = _pairs(rng, 400, 256, identical_same=True)
    thr = verification.choose_threshold(*train)
    assert verification.verification_rate(*train, thr) == 1.0
    assert verification.verification_rate(*test, thr) == 1.0


def test_random_features_verify_at_chance():
    rng = np.random.default_rng(9)
    train = _pairs(rng, 4000, 64, identical_same=False)
    test = _pairs(rng, 4000, 64, identical_same=False)
    thr = verification.choose_threshold(*train)
    # The chosen threshold is the best of every cut through the training similarities.
    sims = verification.cosine_similarity(train[0], train[1])
    s = np.sort(sims)
    cuts = np.concatenate([[s[0] - 1], (s[1:] + s[:-1]) / 2, [s[-1] + 1]])
    best = max(verification.verification_rate(*train, c) for c in cuts)
    assert verification.verification_rate(*train, thr) == best
    assert abs(verification.verification_rate(*test, thr) - 0.5) < 0.04


def test_choose_threshold_midpoint_and_extremes():
    def feats(sims):
        # Unit vectors at angle arccos(s) from e1, so the cosine similarity is exactly s.
        sims = np.asarray(sims, dtype=np.float64)
        return np.stack([np.ones_like(sims), np.zeros_like(sims)], 1), np.stack(
            [sims, np.sqrt(1 - sims**2)], 1
        )

    a, b = feats([0.1, 0.2, 0.6, 0.9])
    thr = verification.choose_threshold(a, b, [False, False, True, True])
    assert thr == pytest.approx(0.4)
    assert verification.verification_rate(a, b, [False, False, True, True], thr) == 1.0
    # All pairs positive: accept everything (threshold below the smallest similarity).
    assert verification.choose_threshold(a, b, [True] * 4) < 0.1
    # All negative: reject everything.
    assert verification.choose_threshold(a, b, [False] * 4) > 0.9
    # Tied similarities cannot be split: the best achievable cut is chosen.
    a, b = feats([0.5, 0.5, 0.5, 0.8])
    thr = verification.choose_threshold(a, b, [False, True, False, True])
    assert verification.verification_rate(a, b, [False, True, False, True], thr) == 0.75
