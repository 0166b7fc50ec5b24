"""Landmark heatmaps (LSSL's side image) and the joint horizontal flip of a face and its points."""

import numpy as np
import pytest

from fergan.data.heatmaps import JAW, default_sigma, flip_face, landmark_heatmap


def spread_landmarks(size, seed=0, jitter=0.1):
    """[68, 2] points, one per cell of an 8x8 grid over the image, moved by up to `jitter` cells."""
    rng = np.random.default_rng(seed)
    step = size / 8
    cells = np.stack(np.meshgrid(np.arange(8), np.arange(8)), -1).reshape(-1, 2)  # 64 cells
    # 68 points: the 64 cells, plus 4 repeats for the jaw (excluded anyway) placed first.
    points = np.concatenate([cells[:4], cells]) * step + step / 2
    offsets = rng.uniform(-jitter, jitter, points.shape) * step
    return (points + offsets).astype(np.float32)


def sharp_points(size):
    """(landmarks, sigma): isolated points and a sigma small enough that no two peaks merge."""
    # An exact grid and sigma = step / 6: neighbours 6 sigma apart, tails below 1e-7.
    return spread_landmarks(size, jitter=0.0), size / 8 / 6


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_range_and_channels(size, channels):
    lm = spread_landmarks(size)
    h = landmark_heatmap(lm, size, channels)
    assert h.shape == (size, size, channels) and h.dtype == np.float32
    assert h.min() >= -1.0 and h.max() <= 1.0
    assert h.min() == -1.0  # the background far from every point
    for c in range(1, channels):
        np.testing.assert_array_equal(h[..., c], h[..., 0])


@pytest.mark.parametrize("size", [32, 64, 128])
def test_peaks_at_landmarks(size):
    lm, sigma = sharp_points(size)
    # Integer positions, so the Gaussian's centre falls on a pixel: value exactly 2*1-1 = 1 there.
    lm = np.round(lm)
    h = landmark_heatmap(lm, size, 1, sigma=sigma)[..., 0]
    radius = int(np.ceil(2 * sigma))
    # Padded with the background so that windows around points near the border stay square.
    padded = np.pad(h, radius, constant_values=-1.0)
    for x, y in lm[JAW.stop :].astype(int):
        assert h[y, x] == pytest.approx(1.0, abs=1e-6)
        window = padded[y : y + 2 * radius + 1, x : x + 2 * radius + 1]
        assert np.unravel_index(np.argmax(window), window.shape) == (radius, radius)


def test_peak_between_pixels_is_nearest_pixel():
    lm, sigma = sharp_points(64)
    lm[JAW.stop :] = np.round(lm[JAW.stop :]) + np.array([0.3, -0.2])
    h = landmark_heatmap(lm, 64, 1, sigma=sigma)[..., 0]
    for x, y in lm[JAW.stop :]:
        xi, yi = np.rint([x, y]).astype(int)
        window = h[yi - 2 : yi + 3, xi - 2 : xi + 3]
        assert np.unravel_index(np.argmax(window), window.shape) == (2, 2)
        expected = np.exp(-((x - xi) ** 2 + (y - yi) ** 2) / (2 * sigma**2))
        # The neighbours' tails (5.6 sigma away and more) add under 1e-6 each.
        assert h[yi, xi] == pytest.approx(2 * expected - 1, abs=1e-4)


def test_jaw_points_are_excluded():
    size = 128
    lm = np.full((68, 2), 20.0, np.float32)  # every non-jaw point in one corner
    lm[JAW] = [100.0, 100.0]  # the jaw alone in the other
    h = landmark_heatmap(lm, size, 1)[..., 0]
    assert h[100, 100] == -1.0
    assert h[20, 20] == 1.0
    only_jaw = landmark_heatmap(np.where(np.arange(68)[:, None] < 17, lm, np.nan), size)
    np.testing.assert_array_equal(only_jaw, -1.0)  # NaN (unknown) points draw nothing


def test_default_sigma_scales_with_size():
    assert default_sigma(128) == 5.0 and default_sigma(64) == 2.5 and default_sigma(32) == 1.25
    # The same face drawn at half size is (to sampling error) the larger map subsampled.
    lm = spread_landmarks(128)
    big = landmark_heatmap(lm, 128)
    small = landmark_heatmap((lm - 0.5) / 2, 64)  # pixel centres of 2x2 blocks
    # Compare block means, which average out the sampling: loose bound, the shape must match.
    pooled = big.reshape(64, 2, 64, 2, 1).mean(axis=(1, 3))
    assert np.abs(pooled - small).mean() < 0.05


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_flip_commutes_with_heatmap(size, channels):
    rng = np.random.default_rng(size)
    lm = rng.uniform(0, size - 1, (68, 2)).astype(np.float32)
    image = rng.uniform(-1, 1, (size, size, channels)).astype(np.float32)
    flipped_image, flipped_lm = flip_face(image, lm)
    np.testing.assert_array_equal(flipped_image, image[:, ::-1])
    np.testing.assert_array_equal(flipped_lm[:, 1], lm[:, 1])
    np.testing.assert_allclose(flipped_lm[:, 0], size - 1 - lm[:, 0])
    heat = landmark_heatmap(lm, size, channels)
    np.testing.assert_allclose(
        landmark_heatmap(flipped_lm, size, channels), heat[:, ::-1], atol=1e-5
    )  # float32 landmarks: size - 1 - x is rounded
    # Flipping twice gives the face back.
    again_image, again_lm = flip_face(flipped_image, flipped_lm)
    np.testing.assert_array_equal(again_image, image)
    np.testing.assert_allclose(again_lm, lm, atol=1e-5)


def test_flip_grayscale_and_input_untouched():
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    lm = np.zeros((68, 2), np.float32)
    out, out_lm = flip_face(image, lm)
    np.testing.assert_array_equal(out[0], [3, 2, 1, 0])
    assert (out_lm[:, 0] == 3).all() and (lm == 0).all()
