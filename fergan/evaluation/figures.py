"""Figures and tables for the paper's results: synthesis grids (Figs. 4-7), t-SNE of
recognition features (Fig. 9), training curves, confusion matrices and the accuracy table
(Table V / Fig. 8).

Figures are drawn on ``matplotlib.figure.Figure`` objects with an Agg canvas rather than
through ``pyplot``, so nothing here touches global backend state or leaks open figures in a
long training run. Every file is written with ``fergan.files.atomic_write``, so a reader
(TensorBoard, a notebook, a crashed run) never sees a half-written PNG.
"""

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image
from sklearn.manifold import TSNE

from fergan.files import atomic_write

__all__ = [
    "image_grid",
    "plot_confusion_matrix",
    "plot_expression_grid",
    "plot_intensity_sweep",
    "plot_prior_faces",
    "plot_training_curves",
    "plot_tsne",
    "results_table_markdown",
    "sample_indices",
    "save_png",
    "to_uint8",
]

# Inches per image tile in the synthesis figures: large enough for a 10-12 character column
# title at the default font size.
_TILE_INCHES = 1.3


# ---------------------------------------------------------------------------------------------
# Image tiles
# ---------------------------------------------------------------------------------------------


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Maps images in [-1, 1] (any shape) to uint8 [0, 255], clipping out-of-range values."""
    x = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tiles a grid of images into one uint8 image (also used for TensorBoard summaries).

    Args:
        images: [R, C, H, W, ch] in [-1, 1] (float) or already uint8; tile (r, c) goes to row
            r, column c.
        pad: border width in pixels between neighbouring tiles (none around the outside).
        pad_value: uint8 value of the border.

    Returns:
        uint8 [R*H + (R-1)*pad, C*W + (C-1)*pad, ch]; tile (r, c) occupies rows
        r*(H+pad) : r*(H+pad)+H and columns c*(W+pad) : c*(W+pad)+W.
    """
    images = np.asarray(images)
    if images.ndim != 5:
        raise ValueError(f"expected [R, C, H, W, ch] images, got shape {images.shape}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    tiles = images if images.dtype == np.uint8 else to_uint8(images)
    R, C, H, W, ch = tiles.shape
    out = np.full((R * H + (R - 1) * pad, C * W + (C - 1) * pad, ch), pad_value, np.uint8)
    for r in range(R):
        for c in range(C):
            top, left = r * (H + pad), c * (W + pad)
            out[top : top + H, left : left + W] = tiles[r, c]
    return out


def save_png(path: str, image: np.ndarray) -> None:
    """Writes a uint8 image [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] as a PNG, atomically."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"save_png expects uint8, got {image.dtype} (see to_uint8)")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise ValueError(f"cannot save an image of shape {image.shape} as PNG")
    pil = Image.fromarray(image)
    atomic_write(path, lambda tmp: pil.save(tmp, format="PNG"))


# ---------------------------------------------------------------------------------------------
# Matplotlib helpers
# ---------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float, **kwargs) -> Figure:
    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig: Figure, path: str, dpi: int = 100) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def _check_tiles(images: np.ndarray, leading: int, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != leading + 3:
        raise ValueError(f"{name}: expected {leading} leading axes + [H, W, c], got {images.shape}")
    if images.shape[-1] not in (1, 3):
        raise ValueError(f"{name}: channel count must be 1 or 3, got {images.shape[-1]}")
    return images


def _plot_tile_grid(
    path: str,
    tiles: np.ndarray,
    col_labels: Sequence[str],
    row_labels: Sequence[str] | None,
    title: str | None,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> None:
    """Draws [R, C, H, W, c] tiles as one image with column titles on top and row labels left.

    One ``imshow`` of the tiled grid (instead of R*C subplots) keeps the tiles aligned and the
    rendering fast; labels sit on ticks at the tile centres.
    """
    R, C, H, W, ch = tiles.shape
    pad = max(1, round(min(H, W) / 32))
    grid = image_grid(tiles, pad=pad)
    left = 1.4 if row_labels is not None else 0.3
    top = 0.4 + (0.4 if title else 0.0)
    bottom = 0.5 if xlabel else 0.2
    fig = _new_figure(C * _TILE_INCHES + left + 0.3, R * _TILE_INCHES + top + bottom)
    ax = fig.add_axes(
        (
            left / fig.get_figwidth(),
            bottom / fig.get_figheight(),
            C * _TILE_INCHES / fig.get_figwidth(),
            R * _TILE_INCHES / fig.get_figheight(),
        )
    )
    if ch == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([c * (W + pad) + (W - 1) / 2 for c in range(C)])
    ax.set_xticklabels(list(col_labels))
    ax.xaxis.tick_top()
    if row_labels is not None:
        ax.set_yticks([r * (H + pad) + (H - 1) / 2 for r in range(R)])
        ax.set_yticklabels(list(row_labels))
    else:
        ax.set_yticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        fig.suptitle(title, y=1.0 - 0.1 / fig.get_figheight(), va="top")
    _save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# Synthesis figures (Figs. 4-7)
# ---------------------------------------------------------------------------------------------


def sample_indices(y: np.ndarray, num_classes: int, limit: int = 8) -> np.ndarray:
    """Indices of the faces a sample figure shows: the first face of each class present, at most
    `limit` (the first face when none), so the rows show different inputs."""
    picks = [int(np.flatnonzero(y == c)[0]) for c in range(num_classes) if np.any(y == c)]
    return np.asarray(picks[:limit] or [0])


def plot_expression_grid(
    path: str,
    inputs: np.ndarray,
    outputs: np.ndarray,
    class_names: Sequence[str],
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Expression transfer grid (Figs. 4-5): each input face, then it in every target expression.

    Args:
        path: output PNG path.
        inputs: [N, H, W, c] real faces in [-1, 1] (c = 1 or 3); first column.
        outputs: [N, K, H, W, c] synthesised faces; column 1 + k shows expression k.
        class_names: K column titles.
        row_labels: optional N labels (e.g. subject ids or variant names).
        title: optional figure title.
    """
    inputs = _check_tiles(inputs, 1, "inputs")
    outputs = _check_tiles(outputs, 2, "outputs")
    N, K = outputs.shape[:2]
    if inputs.shape[0] != N or inputs.shape[1:] != outputs.shape[2:]:
        raise ValueError(f"inputs {inputs.shape} do not match outputs {outputs.shape}")
    if len(class_names) != K:
        raise ValueError(f"{len(class_names)} class names for {K} expressions")
    tiles = np.concatenate([inputs[:, None], outputs], axis=1)
    _plot_tile_grid(path, tiles, ["input", *class_names], row_labels, title)


def plot_intensity_sweep(
    path: str,
    rows: np.ndarray,
    class_names: Sequence[str],
    intensities: Sequence[float],
    title: str | None = None,
) -> None:
    """Expression intensity sweep (Fig. 6): one row per expression, one column per intensity.

    Args:
        path: output PNG path.
        rows: [K, A, H, W, c] faces in [-1, 1]; rows[k, a] is expression k at intensities[a].
        class_names: K row labels.
        intensities: A intensity values in [0, 1] (column titles).
        title: optional figure title.
    """
    rows = _check_tiles(rows, 2, "rows")
    K, A = rows.shape[:2]
    if len(class_names) != K or len(intensities) != A:
        raise ValueError(
            f"rows {rows.shape[:2]} vs {len(class_names)} names, {len(intensities)} intensities"
        )
    cols = [f"{float(a):.2g}" for a in intensities]
    _plot_tile_grid(path, rows, cols, list(class_names), title, xlabel="intensity")


def plot_prior_faces(
    path: str,
    images: np.ndarray,
    class_names: Sequence[str],
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Faces generated from the prior (Fig. 7): one random z per row, each expression per column.

    Args:
        path: output PNG path.
        images: [R, K, H, W, c] faces in [-1, 1]; images[r, k] = Gdec([z_r, u(k)]).
        class_names: K column titles.
        row_labels: optional R labels; defaults to "z1".."zR".
        title: optional figure title.
    """
    images = _check_tiles(images, 2, "images")
    R, K = images.shape[:2]
    if len(class_names) != K:
        raise ValueError(f"{len(class_names)} class names for {K} expressions")
    if row_labels is None:
        row_labels = [f"z{r + 1}" for r in range(R)]
    _plot_tile_grid(path, images, list(class_names), row_labels, title)


# ---------------------------------------------------------------------------------------------
# Recognition figures
# ---------------------------------------------------------------------------------------------


def _class_colours(k: int) -> list:
    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


def _tsne_panel(
    name: str, feats: np.ndarray, labels: np.ndarray, synthetic: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One panel's inputs as (features float64 [N, D], labels int64 [N], is_synthetic bool [N]),
    checked for agreeing shapes and the 4 points t-SNE needs."""
    feats = np.asarray(feats, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    synthetic = np.asarray(synthetic, dtype=bool).reshape(-1)
    N = feats.shape[0]
    if feats.ndim != 2 or labels.shape != (N,) or synthetic.shape != (N,):
        raise ValueError(
            f"panel {name!r}: features {feats.shape}, labels {labels.shape}, "
            f"is_synthetic {synthetic.shape} do not agree"
        )
    if N < 4:
        raise ValueError(f"panel {name!r}: t-SNE needs at least 4 points, got {N}")
    return feats, labels, synthetic


def _tsne_embedding(feats: np.ndarray, seed: int, perplexity: float | None) -> np.ndarray:
    """[N, D] -> [N, 2]; the default perplexity min(30, (N - 1) / 3) lets small sets work."""
    N = feats.shape[0]
    perp = perplexity if perplexity is not None else min(30.0, (N - 1) / 3.0)
    return TSNE(
        n_components=2, perplexity=perp, init="pca", learning_rate="auto", random_state=seed
    ).fit_transform(feats)


def _scatter_classes(
    ax, emb: np.ndarray, labels: np.ndarray, synthetic: np.ndarray, colours: list
) -> None:
    """Scatters [N, 2] points: colour = class, marker o = real, x = synthetic."""
    for k, colour in enumerate(colours):
        real = (labels == k) & ~synthetic
        fake = (labels == k) & synthetic
        ax.scatter(emb[real, 0], emb[real, 1], s=14, marker="o", color=colour, alpha=0.8)
        ax.scatter(emb[fake, 0], emb[fake, 1], s=18, marker="x", color=colour, alpha=0.8)


def _tsne_legend(fig: Figure, class_names: Sequence[str], colours: list) -> None:
    """One legend right of every panel: a colour per class, then the real / synthetic markers."""
    handles = [
        Line2D([], [], marker="s", linestyle="", color=colours[k], markersize=8, label=c)
        for k, c in enumerate(class_names)
    ]
    handles += [
        Line2D([], [], marker="o", linestyle="", color="0.3", label="real"),
        Line2D([], [], marker="x", linestyle="", color="0.3", label="synthetic"),
    ]
    fig.legend(handles=handles, loc="outside right upper", frameon=False)


def plot_tsne(
    path: str,
    panels: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    seed: int = 0,
    perplexity: float | None = None,
) -> dict[str, np.ndarray]:
    """t-SNE of recognition features (Fig. 9), one subplot per panel.

    Colour = expression class; marker = real (o) or synthetic (x). Each panel gets its own
    embedding (features from different models are not comparable).

    Args:
        path: output PNG path.
        panels: title -> (features [N, D], labels [N] int in [0, K), is_synthetic bool [N]),
            e.g. {"FESR_JL": ..., "FESR_JL-IL": ...}.
        class_names: K class names (legend).
        seed: t-SNE random state.
        perplexity: t-SNE perplexity; default min(30, (N - 1) / 3) so small sets still work.

    Returns:
        title -> [N, 2] embedding that was plotted.
    """
    if not panels:
        raise ValueError("no panels to plot")
    colours = _class_colours(len(class_names))
    n = len(panels)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = _new_figure(4.6 * ncols + 1.8, 4.4 * nrows, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    embeddings = {}
    for ax, (name, panel) in zip(axes, panels.items(), strict=False):
        feats, labels, synthetic = _tsne_panel(name, *panel)
        embeddings[name] = _tsne_embedding(feats, seed, perplexity)
        _scatter_classes(ax, embeddings[name], labels, synthetic, colours)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.set_visible(False)
    _tsne_legend(fig, class_names, colours)
    _save_figure(fig, path)
    return embeddings


def _ema(values: np.ndarray, weight: float) -> np.ndarray:
    out = np.empty_like(values)
    acc = values[0]
    for i, v in enumerate(values):
        acc = weight * acc + (1.0 - weight) * v
        out[i] = acc
    return out


def plot_training_curves(
    path: str,
    history: Mapping[str, Sequence[tuple[float, float]]],
    group_by: str = "prefix",
    smoothing: float = 0.0,
) -> None:
    """Training curves, one subplot per metric group.

    Args:
        path: output PNG path.
        history: metric name -> [(step, value), ...], names like "loss/rec", "acc/r_real".
        group_by: "prefix" puts keys sharing the text before the first "/" in one subplot
            (keys without "/" get their own); "key" gives every key its own subplot, for losses
            whose scales differ too much to share axes.
        smoothing: exponential moving average weight in [0, 1); when > 0 the raw curve is drawn
            faintly under the smoothed one (GAN losses are noisy).
    """
    if group_by not in ("prefix", "key"):
        raise ValueError(f"group_by must be 'prefix' or 'key', got {group_by!r}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    groups: dict[str, list[tuple[str, str]]] = {}
    for key in history:
        group, _, rest = key.partition("/") if group_by == "prefix" else (key, "", "")
        groups.setdefault(group, []).append((key, rest or key))
    if not groups:
        raise ValueError("empty history")
    n = len(groups)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = _new_figure(5.0 * ncols, 3.4 * nrows, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (group, members) in zip(axes, groups.items(), strict=False):
        for key, label in members:
            points = np.asarray(history[key], dtype=np.float64).reshape(-1, 2)
            if points.size == 0:
                continue
            steps, values = points[:, 0], points[:, 1]
            if smoothing > 0:
                (line,) = ax.plot(steps, values, alpha=0.25, linewidth=0.8)
                ax.plot(steps, _ema(values, smoothing), color=line.get_color(), label=label)
            else:
                ax.plot(steps, values, label=label)
        ax.set_title(group)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(members) > 1:
            ax.legend(fontsize="small")
    for ax in axes[n:]:
        ax.set_visible(False)
    _save_figure(fig, path)


def plot_confusion_matrix(
    path: str, cm: np.ndarray, class_names: Sequence[str], title: str | None = None
) -> None:
    """Confusion matrix with each cell as a percentage of its true-class row.

    Args:
        path: output PNG path.
        cm: [K, K] counts, rows = true class, columns = predicted class.
        class_names: K names.
        title: optional axes title.
    """
    cm = np.asarray(cm, dtype=np.float64)
    K = len(class_names)
    if cm.shape != (K, K):
        raise ValueError(f"confusion matrix {cm.shape} for {K} class names")
    totals = cm.sum(axis=1, keepdims=True)
    # Rows without samples stay at 0% instead of dividing by zero.
    pct = np.divide(100.0 * cm, totals, out=np.zeros_like(cm), where=totals > 0)
    side = max(4.0, 0.75 * K + 2.0)
    fig = _new_figure(side + 1.0, side, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(pct, cmap="Blues", vmin=0.0, vmax=100.0)
    for i in range(K):
        for j in range(K):
            ax.text(
                j,
                i,
                f"{pct[i, j]:.1f}",
                ha="center",
                va="center",
                fontsize="small",
                color="white" if pct[i, j] > 55 else "black",
            )
    ax.set_xticks(range(K))
    ax.set_xticklabels(list(class_names), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(K))
    ax.set_yticklabels(list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, label="% of true class", shrink=0.8)
    _save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def results_table_markdown(
    results: Mapping[str, Sequence[float]], scale: float = 100.0, ddof: int = 0, decimals: int = 2
) -> str:
    """Markdown table of cross-validation accuracies, shaped like Table V / Fig. 8.

    One row per variant: accuracy of each fold, then their mean and standard deviation, all in
    percent. Variants with fewer folds than the longest get "-" in the missing columns.

    Args:
        results: variant name -> per-fold accuracies (rows keep this order).
        scale: multiplier to percent: 100 for accuracies in [0, 1], 1 if already in percent.
        ddof: delta degrees of freedom of the std (0 = population, 1 = sample).
        decimals: digits after the decimal point.

    Returns:
        The table as a string ending in a newline.
    """
    if not results:
        raise ValueError("no results")
    n_folds = max(len(v) for v in results.values())
    header = ["variant", *[f"fold {i + 1}" for i in range(n_folds)], "mean (%)", "std (%)"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" + "---:|" * (len(header) - 1),
    ]

    def fmt(x: float) -> str:
        return "n/a" if not np.isfinite(x) else f"{x:.{decimals}f}"

    for name, accs in results.items():
        pct = scale * np.asarray(accs, dtype=np.float64)
        if pct.size == 0:
            mean = std = float("nan")
        else:
            mean = float(pct.mean())
            std = float(pct.std(ddof=ddof)) if pct.size > ddof else float("nan")
        cells = [fmt(x) for x in pct] + ["-"] * (n_folds - pct.size)
        lines.append("| " + " | ".join([name, *cells, fmt(mean), fmt(std)]) + " |")
    return "\n".join(lines) + "\n"
