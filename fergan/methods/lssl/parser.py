"""The face parser P of LSSL's parsing loss L_p, and its pretraining on rendered faces.

Paper B trains a U-Net of MobileNet depthwise blocks on Helen and keeps three of its parts (lips,
eyes, skin). Helen is not available here, so P is a small U-Net of depthwise-separable blocks with
four classes (`face_renderer.PARTS`: background, skin, eyes, lips), trained on the procedural
renderer's faces against its analytic part labels (`face_renderer.face_part_masks`), then frozen.
The faces belong to subjects of their own, drawn from `config.seed` apart from the dataset's.

`parser_loss` is L_p: the per-pixel cross-entropy of P(x') against the soft targets
stop_gradient(softmax P(x)). `pretrain_parser` trains P, measures its mIoU over the four classes
on held-out subjects, and saves it with Orbax; `load_parser` reads it back.

Settings come from an optional `parser` config section (`config.get("parser", {})`); see
`parser_settings` for the keys and their defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from fergan import console
from fergan.batching import batched_apply
from fergan.data import face_renderer
from fergan.data.preprocess import to_float
from fergan.files import write_json

PyTree = Any

NUM_CLASSES = len(face_renderer.PARTS)
WEIGHTS_DIRNAME = "parser_weights"
_RENDER_SALT = 0x15A1  # Leads the parser's render seeds, so its subjects are not the dataset's.
_KEY_SALT = 0x9A  # Folded into config.seed for the parser's init key and batch order.
_TRAIN, _TEST = 0, 1  # Split ids in the render seeds: the two subject sets never share a seed.
_EVAL_BATCH = 64


# --- network ---------------------------------------------------------------------------------


def _groups(channels: int) -> int:
    """GroupNorm groups for `channels`: up to 8, dividing it."""
    return math.gcd(channels, 8)


class DepthwiseConv3x3(nn.Module):
    """A 3x3 convolution of every channel on its own (zero padding, stride `strides`), written
    as nine shifted multiply-adds: XLA's grouped convolution is several times slower on CPU,
    where the parser is pretrained and tested.

    [B, H, W, C] -> [B, H / strides, W / strides, C].
    """

    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _, h, w, c = x.shape
        init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", (0, 1), 2)
        kernel = self.param("kernel", init, (3, 3, c))
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        s = self.strides
        out = jnp.zeros((), x.dtype)
        for i in range(3):
            for j in range(3):
                out = out + padded[:, i : i + h : s, j : j + w : s] * kernel[i, j]
        return out


class SeparableBlock(nn.Module):
    """Depthwise 3x3 (stride `strides`) then pointwise 1x1, each followed by GroupNorm and ReLU.

    GroupNorm rather than BatchNorm: P is applied to generated batches inside a GAN step, where
    batch statistics would make one face's parsing depend on the others'.

    [B, H, W, C] -> [B, H / strides, W / strides, features].
    """

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        x = DepthwiseConv3x3(self.strides)(x)
        x = nn.relu(nn.GroupNorm(num_groups=_groups(c))(x))
        x = nn.Conv(self.features, (1, 1), use_bias=False)(x)
        return nn.relu(nn.GroupNorm(num_groups=_groups(self.features))(x))


class FaceParser(nn.Module):
    """U-Net of separable blocks: faces [B, S, S, c] in [-1, 1] -> part logits [B, S, S, K].

    `depth` stride-2 levels, channels width * 2^level, so S must be divisible by 2^depth (32, 64
    and 128 are with the default 3). Decoder levels upsample by 2 (nearest) and join the encoder
    features of their size before a block.
    """

    width: int = 16
    num_classes: int = NUM_CLASSES
    depth: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        size = x.shape[1]
        if size % 2**self.depth or x.shape[2] != size:
            raise ValueError(
                f"FaceParser needs square inputs with sides divisible by {2**self.depth}; got "
                f"{x.shape[1:3]}."
            )
        x = nn.relu(nn.GroupNorm(num_groups=_groups(self.width))(nn.Conv(self.width, (3, 3))(x)))
        skips = []
        for level in range(self.depth):
            x = SeparableBlock(self.width * 2**level)(x)
            skips.append(x)
            x = SeparableBlock(self.width * 2 ** (level + 1), strides=2)(x)
        x = SeparableBlock(self.width * 2**self.depth)(x)
        for level in reversed(range(self.depth)):
            b, h, w, c = x.shape
            x = jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest")
            x = SeparableBlock(self.width * 2**level)(jnp.concatenate([x, skips[level]], -1))
        return nn.Conv(self.num_classes, (1, 1))(x)


def parser_loss(logits_fake: jax.Array, logits_real: jax.Array) -> jax.Array:
    """L_p: mean over pixels of the cross-entropy of P(x') against stop_gradient(softmax P(x)).

    Args:
      logits_fake: [B, S, S, K] parser logits of the generated faces x'.
      logits_real: [B, S, S, K] parser logits of the faces x they were edited from; the targets
        they give are constants, so no gradient flows into them.

    Returns:
      float32 scalar.
    """
    targets = jax.lax.stop_gradient(jax.nn.softmax(logits_real, axis=-1))
    return optax.softmax_cross_entropy(logits_fake, targets).mean()


# --- settings and data -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ParserSettings:
    """The parser's pretraining settings (`parser.*`, all optional)."""

    width: int = 16
    train_subjects: int = 120
    test_subjects: int = 30
    views: int = 8  # Faces per subject: neutral, then expressions in turn at random intensities.
    nuisance: float = 0.5  # Pose/lighting/noise scale, wider than the data's so x' still parses.
    steps: int = 600
    batch_size: int = 32
    learning_rate: float = 1e-3
    # Weigh each class's pixels by 1 / sqrt(its share of the training pixels): eyes and lips are
    # under 1% of the pixels at 32 px, and unweighted training leaves them unlearned for hundreds
    # of steps.
    class_balance: bool = True
    log_every: int = 100


def parser_settings(config: ml_collections.ConfigDict) -> ParserSettings:
    """`config.parser` over the defaults of ParserSettings; ValueError on an unknown key or a
    count below 1."""
    section = dict(config.get("parser", {}) or {})
    known = {f.name: f for f in dataclasses.fields(ParserSettings)}
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ValueError(f"Unknown parser.* keys {unknown}; allowed: {sorted(known)}.")
    defaults = ParserSettings()
    values = {k: type(getattr(defaults, k))(section.get(k, getattr(defaults, k))) for k in known}
    settings = ParserSettings(**values)
    counts = ("width", "train_subjects", "test_subjects", "views", "steps", "batch_size")
    low = [f"parser.{k}={getattr(settings, k)}" for k in counts if getattr(settings, k) < 1]
    if low:
        raise ValueError(f"{', '.join(low)} must be >= 1.")
    return settings


@dataclasses.dataclass(frozen=True)
class PartsData:
    """Rendered faces and their part labels: x float32 [N, S, S, c] in [-1, 1], labels int32
    [N, S, S] indexing face_renderer.PARTS."""

    x: np.ndarray
    labels: np.ndarray


def _subject_views(seed: int, split: int, subject: int, settings: ParserSettings, size: int):
    """Yields (face float32 [S, S] in [0, 1], labels int32 [S, S]) of one rendered subject."""
    rng = np.random.default_rng([_RENDER_SALT, seed, split, subject])
    identity = face_renderer.sample_identity(rng)
    for view in range(settings.views):
        # Neutral first, then the expressions in turn, each at its own intensity.
        expression = None if view == 0 else (view - 1) % len(face_renderer.EXPRESSIONS)
        intensity = float(rng.uniform(0.0, 1.0))
        nuisance = face_renderer.sample_nuisance(rng, settings.nuisance)
        face = face_renderer.render_face(identity, expression, intensity, size, rng, nuisance)
        yield face, face_renderer.face_part_masks(identity, expression, intensity, size, nuisance)


def render_parts(
    seed: int, split: int, num_subjects: int, settings: ParserSettings, size: int, channels: int
) -> PartsData:
    """Faces of `num_subjects` subjects of `split` (_TRAIN or _TEST), stored as the dataset stores
    its frames (8-bit gray) and read back at `channels` channels."""
    faces, labels = [], []
    for subject in range(num_subjects):
        for face, parts in _subject_views(seed, split, subject, settings, size):
            faces.append(np.round(face * 255.0).astype(np.uint8))
            labels.append(parts)
    x = to_float(np.stack(faces)[..., None])
    return PartsData(np.repeat(x, channels, axis=-1), np.stack(labels))


# --- training --------------------------------------------------------------------------------


def _init_params(model: FaceParser, seed: int, size: int, channels: int) -> PyTree:
    """Random FaceParser parameters from `seed`."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), _KEY_SALT)
    return model.init(key, jnp.zeros((1, size, size, channels)))["params"]


def class_weights(labels: np.ndarray, num_classes: int, balance: bool) -> np.ndarray:
    """Per-class loss weights float32 [num_classes] from int labels: 1 / sqrt(pixel share) when
    `balance` (scaled so that the average pixel weighs 1; absent classes weigh 0), else ones."""
    if not balance:
        return np.ones(num_classes, np.float32)
    share = np.bincount(labels.ravel(), minlength=num_classes) / labels.size
    weights = np.where(share > 0, 1.0 / np.sqrt(np.maximum(share, 1e-12)), 0.0)
    return (weights / np.sum(share * weights)).astype(np.float32)


def _pixel_cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """Mean over pixels of the cross-entropy of logits [B, S, S, K] against int labels [B, S, S],
    each pixel weighted by its class's entry of `weights` [K]."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.mean(ce * weights[labels])


def _make_train_step(
    model: FaceParser, tx: optax.GradientTransformation, weights: np.ndarray
) -> Callable:
    """The jitted Adam step on faces [B, S, S, c] and labels [B, S, S] with class weights [K]:
    returns (params, opt_state, loss); params and opt_state are donated."""
    weights = jnp.asarray(weights)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, x, labels):
        def loss_fn(p):
            return _pixel_cross_entropy(model.apply({"params": p}, x), labels, weights)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


def _batch_plan(seed: int, n: int, settings: ParserSettings) -> tuple[np.ndarray, np.ndarray]:
    """(indices int [steps, batch], horizontal flips bool [steps, batch]) drawn from `seed`:
    consecutive reshuffled passes over the n training faces."""
    rng = np.random.default_rng([int(seed), _KEY_SALT])
    total = settings.steps * settings.batch_size
    order = np.concatenate([rng.permutation(n) for _ in range(-(-total // n))])[:total]
    shape = (settings.steps, settings.batch_size)
    return order.reshape(shape), rng.random(shape) < 0.5


def _batch(data: PartsData, indices: np.ndarray, flips: np.ndarray):
    """(faces [B, S, S, c], labels [B, S, S]) at `indices`; mirrored where `flips` says, which
    keeps every part a part (the classes have no left and right)."""
    x, labels = data.x[indices], data.labels[indices]
    x = np.where(flips[:, None, None, None], x[:, :, ::-1], x)
    return x, np.where(flips[:, None, None], labels[:, :, ::-1], labels)


def _train(
    model: FaceParser, params: PyTree, data: PartsData, settings: ParserSettings, seed: int
) -> tuple[PyTree, float]:
    """Adam on the per-pixel cross-entropy (class-weighted when `settings.class_balance`).

    Returns:
      (params, mean loss of the last logged window).
    """
    tx = optax.adam(settings.learning_rate)
    opt_state = tx.init(params)
    weights = class_weights(data.labels, NUM_CLASSES, settings.class_balance)
    train_step = _make_train_step(model, tx, weights)
    order, flips = _batch_plan(seed, len(data.x), settings)
    window, loss = [], float("nan")
    with console.progress("parser", settings.steps) as bar:
        for step in range(settings.steps):
            xb, yb = _batch(data, order[step], flips[step])
            params, opt_state, step_loss = train_step(params, opt_state, xb, yb)
            window.append(step_loss)  # Fetched only when logged, so steps are not serialised.
            bar.update(step + 1)
            if (step + 1) % max(settings.log_every, 1) == 0 or step + 1 == settings.steps:
                loss = float(np.mean(jax.device_get(window)))
                bar.metrics({"loss": loss})
                logging.info(
                    "pretrain_parser step %d/%d: loss %.4f", step + 1, settings.steps, loss
                )
                window = []
    return params, loss


# --- evaluation ------------------------------------------------------------------------------


def predict_parts(model: FaceParser, params: PyTree, x: np.ndarray) -> np.ndarray:
    """Most likely part of every pixel of faces x [N, S, S, c]: int32 [N, S, S]."""
    apply = jax.jit(lambda xb: jnp.argmax(model.apply({"params": params}, xb), -1))
    return np.asarray(batched_apply(apply, x, batch=_EVAL_BATCH)).astype(np.int32)


def part_iou(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Intersection over union of every class over all pixels of int arrays of one shape.

    Returns:
      float64 [num_classes]; NaN for a class absent from both.
    """
    confusion = np.bincount(
        labels.ravel() * num_classes + predicted.ravel(), minlength=num_classes**2
    ).reshape(num_classes, num_classes)
    hits = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, hits / union, np.nan)


# --- saving ----------------------------------------------------------------------------------


def save_parser(path: str, params: PyTree, info: dict) -> None:
    """Orbax parameters at `path` (replacing any) and `<path>.json` with `info` (which must hold
    'width' and 'num_classes' for `load_parser`), written atomically by process 0. The JSON
    goes last and any older one first, so it marks a finished save."""
    if jax.process_index() == 0 and os.path.exists(path + ".json"):
        os.remove(path + ".json")
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckpt:
        ckpt.save(path, args=ocp.args.StandardSave(params), force=True)
    if jax.process_index() == 0:
        write_json(path + ".json", info)


def parser_info(path: str) -> dict:
    """The `<path>.json` that `pretrain_parser` writes last (so its presence marks a finished
    save); FileNotFoundError names it."""
    info_path = os.path.abspath(os.path.expanduser(path)) + ".json"
    if not os.path.isfile(info_path):
        raise FileNotFoundError(f"lssl.parser_weights: no finished face parser at {info_path}")
    with open(info_path) as f:
        return json.load(f)


def parser_module(path: str) -> FaceParser:
    """The FaceParser whose weights `pretrain_parser` wrote at `path` (no weights read)."""
    info = parser_info(path)
    return FaceParser(width=int(info["width"]), num_classes=int(info["num_classes"]))


def load_parser(path: str) -> tuple[FaceParser, PyTree]:
    """(FaceParser, params as float32 numpy) of weights written by `pretrain_parser`."""
    model = parser_module(path)
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckpt:
        params = ckpt.restore(os.path.abspath(os.path.expanduser(path)))
    return model, jax.tree.map(lambda a: np.asarray(a, np.float32), params)


def ensure_parser(config: ml_collections.ConfigDict, folder: str) -> str:
    """The absolute path of the face parser a run in `folder` uses: `lssl.parser_weights` when
    set, else `<folder>/parser_weights`, pretrained first (`pretrain_parser`) when no finished
    save is there. A save for another image size or channel count is an error naming it."""
    given = config.lssl.parser_weights
    path = os.path.abspath(os.path.expanduser(given or os.path.join(folder, WEIGHTS_DIRNAME)))
    if not given and not os.path.isfile(path + ".json"):
        console.say(f"lssl: training the face parser of L_p into {path}")
        pretrain_parser(config, folder)
    info = parser_info(path)
    want = (int(config.model.image_size), int(config.model.channels))
    if (int(info["image_size"]), int(info["channels"])) != want:
        raise ValueError(
            f"lssl.parser_weights={path} was trained at {info['image_size']} px with "
            f"{info['channels']} channel(s); this run has {want[0]} px and {want[1]}"
        )
    return path


# --- entry point -----------------------------------------------------------------------------


def pretrain_parser(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains FaceParser on rendered faces and their part labels, then saves it.

    Faces: `parser.train_subjects` subjects (`parser.views` faces each) at `config.model
    .image_size` and `config.model.channels`, seeded from `config.seed` apart from the dataset's
    subjects; `parser.test_subjects` further subjects are held out for the mIoU. Adam at
    `parser.learning_rate` for `parser.steps` steps of `parser.batch_size` faces, mirrored at
    random, on the per-pixel cross-entropy with class weights (`class_weights`). `config` is only
    read.

    Writes `<workdir>/parser_weights` (Orbax) and `<workdir>/parser_weights.json`.

    Returns:
      {'weights': path, 'miou': float (mean IoU over the four parts on held-out subjects),
       'iou': {part: float}, 'final_loss', 'steps', 'width', 'image_size', 'channels',
       'num_classes', 'num_train_images', 'num_test_images', 'seconds'}.
    """
    settings = parser_settings(config)
    size, channels = int(config.model.image_size), int(config.model.channels)
    start = time.time()
    train = render_parts(config.seed, _TRAIN, settings.train_subjects, settings, size, channels)
    test = render_parts(config.seed, _TEST, settings.test_subjects, settings, size, channels)
    console.say(f"face parser: {len(train.x)} rendered faces at {size} px; compiling ...")
    model = FaceParser(width=settings.width)
    params = _init_params(model, config.seed, size, channels)
    params, loss = _train(model, params, train, settings, config.seed)
    iou = part_iou(predict_parts(model, params, test.x), test.labels, NUM_CLASSES)
    summary = {
        "weights": os.path.join(os.path.abspath(workdir), WEIGHTS_DIRNAME),
        "miou": float(np.nanmean(iou)),
        "iou": {name: float(v) for name, v in zip(face_renderer.PARTS, iou, strict=True)},
        "final_loss": loss,
        "steps": settings.steps,
        "width": settings.width,
        "image_size": size,
        "channels": channels,
        "num_classes": NUM_CLASSES,
        "num_train_images": len(train.x),
        "num_test_images": len(test.x),
        "seconds": time.time() - start,
    }
    save_parser(summary["weights"], jax.device_get(params), summary)
    logging.info(
        "pretrain_parser: held-out mIoU %.3f; weights in %s", summary["miou"], summary["weights"]
    )
    return summary
