"""Figure writers produce valid PNGs; image tiling and the results table are exact."""

import os
import re

import numpy as np
import pytest
from PIL import Image

from fergan.evaluation import figures

NAMES = ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
K = len(NAMES)


def _faces(rng, *lead, size=16, ch=1):
    return rng.uniform(-1, 1, (*lead, size, size, ch)).astype(np.float32)


def _read_png(path, min_side=150):
    assert os.path.getsize(path) > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        arr = np.asarray(im)
    assert min(arr.shape[:2]) >= min_side
    assert arr.std() > 0, "blank image"
    # No temporary files left beside the output.
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp-")]
    return arr


def test_to_uint8_mapping():
    x = np.array([-1.0, 0.0, 1.0, -3.0, 2.0])
    np.testing.assert_array_equal(figures.to_uint8(x), [0, 128, 255, 0, 255])


@pytest.mark.parametrize("pad", [1, 2])
def test_image_grid_places_tiles_exactly(pad):
    R, C, H, W, ch = 2, 3, 4, 5, 3
    # Tile (r, c) is constant with value -1 + 0.25 * (r * C + c), so each tile is identifiable.
    values = -1.0 + 0.25 * np.arange(R * C).reshape(R, C)
    tiles = np.broadcast_to(values[:, :, None, None, None], (R, C, H, W, ch)).copy()
    tiles[1, 2, 0, 0] = 1.0  # a single marked pixel pins the orientation within a tile
    grid = figures.image_grid(tiles, pad=pad, pad_value=77)
    assert grid.dtype == np.uint8
    assert grid.shape == (R * H + (R - 1) * pad, C * W + (C - 1) * pad, ch)
    covered = np.zeros(grid.shape[:2], bool)
    for r in range(R):
        for c in range(C):
            top, left = r * (H + pad), c * (W + pad)
            block = grid[top : top + H, left : left + W]
            want = figures.to_uint8(tiles[r, c])
            np.testing.assert_array_equal(block, want)
            covered[top : top + H, left : left + W] = True
    assert grid[(H + pad), 2 * (W + pad)].tolist() == [255] * ch
    # Everything outside the tiles is border.
    assert np.all(grid[~covered] == 77)
    assert (~covered).sum() == grid.shape[0] * grid.shape[1] - R * C * H * W


def test_image_grid_passes_uint8_through():
    tiles = np.arange(2 * 2 * 2 * 2, dtype=np.uint8).reshape(2, 2, 2, 2, 1)
    grid = figures.image_grid(tiles, pad=1, pad_value=0)
    np.testing.assert_array_equal(grid[:2, :2, 0], tiles[0, 0, :, :, 0])
    np.testing.assert_array_equal(grid[3:, 3:, 0], tiles[1, 1, :, :, 0])


@pytest.mark.parametrize("ch", [1, 3])
def test_save_png_round_trip(tmp_path, ch):
    rng = np.random.default_rng(ch)
    img = rng.integers(0, 256, (20, 30, ch), dtype=np.uint8)
    path = tmp_path / "sub" / "img.png"
    figures.save_png(str(path), img)
    with Image.open(path) as im:
        back = np.asarray(im)
    np.testing.assert_array_equal(back, img[..., 0] if ch == 1 else img)
    assert os.listdir(path.parent) == ["img.png"]
    with pytest.raises(ValueError):
        figures.save_png(str(path), img.astype(np.float32))


@pytest.mark.parametrize("ch", [1, 3])
def test_plot_expression_grid(tmp_path, ch):
    rng = np.random.default_rng(0)
    path = str(tmp_path / "expr.png")
    figures.plot_expression_grid(
        path,
        _faces(rng, 3, ch=ch),
        _faces(rng, 3, K, ch=ch),
        NAMES,
        row_labels=["a", "b", "c"],
        title="FG",
    )
    arr = _read_png(path)
    assert arr.shape[1] > arr.shape[0]  # 1 + K columns, 3 rows
    with pytest.raises(ValueError):
        figures.plot_expression_grid(path, _faces(rng, 3), _faces(rng, 3, K), NAMES[:-1])


def test_plot_intensity_sweep(tmp_path):
    rng = np.random.default_rng(1)
    path = str(tmp_path / "sweep.png")
    intensities = [0.0, 0.25, 0.5, 0.75, 1.0]
    figures.plot_intensity_sweep(path, _faces(rng, K, len(intensities)), NAMES, intensities)
    _read_png(path)


def test_plot_prior_faces(tmp_path):
    rng = np.random.default_rng(2)
    path = str(tmp_path / "prior.png")
    figures.plot_prior_faces(path, _faces(rng, 3, K), NAMES)
    _read_png(path)


def test_plot_tsne(tmp_path):
    rng = np.random.default_rng(3)
    n = 30

    def panel(spread):
        labels = rng.integers(0, K, n)
        centres = rng.normal(size=(K, 8)) * spread
        return centres[labels] + rng.normal(size=(n, 8)), labels, rng.random(n) < 0.5

    path = str(tmp_path / "tsne.png")
    emb = figures.plot_tsne(path, {"FESR_JL": panel(4.0), "FESR_JL-IL": panel(1.0)}, NAMES, seed=0)
    assert set(emb) == {"FESR_JL", "FESR_JL-IL"}
    assert all(e.shape == (n, 2) and np.all(np.isfinite(e)) for e in emb.values())
    arr = _read_png(path)
    assert arr.shape[1] > arr.shape[0]  # two panels side by side


def test_plot_training_curves(tmp_path):
    steps = range(0, 200, 10)
    history = {
        "loss/rec": [(s, 1.0 / (1 + s)) for s in steps],
        "loss/g_adv": [(s, np.sin(s / 20)) for s in steps],
        "acc/r_real": [(s, s / 200) for s in steps],
        "lr": [(s, 1e-4) for s in steps],
    }
    for group_by, smoothing in (("prefix", 0.0), ("key", 0.6)):
        path = str(tmp_path / f"curves_{group_by}.png")
        figures.plot_training_curves(path, history, group_by=group_by, smoothing=smoothing)
        _read_png(path)


def test_plot_confusion_matrix(tmp_path):
    cm = np.diag(np.arange(1, K + 1)) * 5 + 1
    cm[1] = 0  # an empty row must not divide by zero
    path = str(tmp_path / "cm.png")
    figures.plot_confusion_matrix(path, cm, NAMES, title="FESR_JL")
    _read_png(path)


def _parse_table(md):
    rows = [line for line in md.strip().splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert re.fullmatch(r"[|\-: ]+", rows[1])
    body = {}
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(header)
        body[cells[0]] = cells[1:]
    return header, body


def test_results_table_markdown_numbers():
    rng = np.random.default_rng(4)
    results = {
        "BASELINE": list(rng.uniform(0.9, 0.97, 10)),
        "FESR_SL": list(rng.uniform(0.93, 0.99, 10)),
        "FESR_JL": list(rng.uniform(0.97, 1.0, 10)),
    }
    header, body = _parse_table(figures.results_table_markdown(results))
    assert header[0] == "variant" and len(header) == 1 + 10 + 2
    assert list(body) == list(results)  # input order kept
    for name, accs in results.items():
        pct = 100 * np.array(accs)
        cells = [float(c) for c in body[name]]
        np.testing.assert_allclose(cells[:10], pct, atol=0.005 + 1e-9)
        mean = sum(pct) / len(pct)
        std = (sum((p - mean) ** 2 for p in pct) / len(pct)) ** 0.5
        assert cells[10] == pytest.approx(mean, abs=0.005 + 1e-9)
        assert cells[11] == pytest.approx(std, abs=0.005 + 1e-9)


def test_results_table_uneven_folds_and_percent_inputs():
    md = figures.results_table_markdown({"a": [90.0, 80.0], "b": [70.0]}, scale=1.0, ddof=1)
    header, body = _parse_table(md)
    assert header[1:3] == ["fold 1", "fold 2"]
    assert body["a"] == ["90.00", "80.00", "85.00", f"{np.std([90, 80], ddof=1):.2f}"]
    assert body["b"] == ["70.00", "-", "70.00", "n/a"]
