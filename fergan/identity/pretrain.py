"""--mode pretrain_identity: train LightCNN-29 as a face-identity classifier on the user's data.

Without the published weights, the identity network can still be made meaningful by training it
to tell apart the subjects of the configured training split (their ids are the labels; fc2 has one
output per training subject). The held-out subjects of the fold then measure how well the 256-d
`fc` feature generalises to unseen faces (verification AUC, rank-1). The result is saved in the
converter's format, so `identity.weights` can point at either.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from fergan import console
from fergan.data.pipeline import build_datasets, data_dir, eval_arrays
from fergan.files import write_json
from fergan.identity.features import identity_features
from fergan.identity.verification import rank1_accuracy, verification_auc
from fergan.identity.weights import PRETRAINED_DIRNAME, save_identity_params
from fergan.models import LightCNN29, to_lightcnn_input

PyTree = Any

_KEY_SALT = 0x1D  # Folded into config.seed so these keys stay apart from init_state's.


@dataclasses.dataclass(frozen=True)
class _Schedule:
    """The `identity.pretrain_*` settings, checked."""

    steps: int
    batch: int
    log_every: int
    learning_rate: float


@dataclasses.dataclass(frozen=True)
class _IdentityData:
    """The fold's faces for identity training.

    x_train: [N, S, S, c] training faces in [-1, 1]; labels: int32 [N], index into subject_ids;
    subject_ids: [K] the training subjects (fc2 row i is subject_ids[i]);
    x_test: [M, S, S, c] held-out faces in [-1, 1]; test_subjects: [M] their subject ids.
    """

    x_train: np.ndarray
    labels: np.ndarray
    subject_ids: np.ndarray
    x_test: np.ndarray
    test_subjects: np.ndarray
    dataset: str

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def num_test_subjects(self) -> int:
        return len(np.unique(self.test_subjects))


def _schedule(ic: ml_collections.ConfigDict) -> _Schedule:
    """Reads `identity.pretrain_*`; ValueError when steps or batch size is below 1."""
    steps = int(ic.pretrain_steps)
    batch = int(ic.pretrain_batch_size)
    if steps < 1 or batch < 1:
        raise ValueError(
            f"identity.pretrain_steps={steps} and identity.pretrain_batch_size={batch} must both "
            "be >= 1."
        )
    return _Schedule(
        steps, batch, max(int(ic.pretrain_log_every), 1), float(ic.pretrain_learning_rate)
    )


def _identity_data(config: ml_collections.ConfigDict, workdir: str) -> _IdentityData:
    """The configured fold's train / test faces; ValueError with fewer than 2 training subjects."""
    datasets = build_datasets(config, data_dir(config, workdir))
    train, test = eval_arrays(datasets, "train"), eval_arrays(datasets, "test")
    subject_ids, labels = np.unique(train["subject"], return_inverse=True)
    if len(subject_ids) < 2:
        raise ValueError(
            f"pretrain_identity needs at least 2 training subjects; fold {config.data.fold} of "
            f"{datasets.name} has {len(subject_ids)}."
        )
    return _IdentityData(
        train["x"], labels.astype(np.int32), subject_ids, test["x"], test["subject"], datasets.name
    )


def _verification(features: np.ndarray, subjects: np.ndarray) -> tuple[float, float]:
    """(AUC, rank-1) or NaNs when the held-out split cannot form both kinds of pairs."""
    try:
        return verification_auc(features, subjects), rank1_accuracy(features, subjects)
    except ValueError as e:
        logging.warning("Identity verification skipped: %s", e)
        return float("nan"), float("nan")


def _held_out_verification(model: LightCNN29, params: PyTree, data: _IdentityData):
    """(AUC, rank-1) of F_id on the held-out subjects (NaNs when they cannot form pairs)."""
    return _verification(identity_features(model, params, data.x_test), data.test_subjects)


def _init_params(model: LightCNN29, seed: int, image_size: int) -> PyTree:
    """Random LightCNN29 parameters (fc2 included) from `seed`."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), _KEY_SALT)
    return model.init(key, jnp.zeros((1, image_size, image_size, 1)))["params"]


def _make_train_step(model: LightCNN29, tx: optax.GradientTransformation) -> Callable:
    """The jitted Adam step on a batch of faces [B, S, S, c] in [-1, 1] and labels int32 [B].

    Returns (params, opt_state, [loss, accuracy]); params and opt_state are donated.
    """

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, x, y):
        def loss_fn(p):
            logits, _ = model.apply({"params": p}, to_lightcnn_input(x))
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, jnp.mean(jnp.argmax(logits, -1) == y)

        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, jnp.stack([loss, acc])

    return train_step


def _batch_indices(rng: np.random.Generator, n: int, batch: int, steps: int) -> np.ndarray:
    """[steps, batch] indices: consecutive reshuffled passes over the n training images."""
    passes = -(-steps * batch // n)
    order = np.concatenate([rng.permutation(n) for _ in range(passes)])
    return order[: steps * batch].reshape(steps, batch)


def _batch_plan(seed: int, flip: bool, n: int, sched: _Schedule) -> tuple[np.ndarray, np.ndarray]:
    """(indices int [steps, batch], horizontal flips bool [steps, batch]), drawn from `seed`."""
    rng = np.random.default_rng([int(seed), _KEY_SALT])
    order = _batch_indices(rng, n, sched.batch, sched.steps)
    shape = (sched.steps, sched.batch)
    flips = rng.random(shape) < 0.5 if flip else np.zeros(shape, bool)
    return order, flips


def _batch(data: _IdentityData, indices: np.ndarray, flips: np.ndarray):
    """(faces [B, S, S, c], labels [B]) of the training faces at `indices`, flipped where asked."""
    xb = data.x_train[indices]
    return np.where(flips[:, None, None, None], xb[:, :, ::-1], xb), data.labels[indices]


def _log_window(window: list, step: int, steps: int, t_log: float, bar) -> tuple[float, float]:
    """Mean (loss, accuracy) of the steps since the last log, shown on the bar and logged."""
    loss, acc = np.mean(np.asarray(jax.device_get(window)), axis=0).tolist()
    bar.metrics({"loss": loss, "acc": acc})
    logging.info(
        "pretrain_identity step %d/%d: loss %.4f, train accuracy %.3f (%.1f steps/s).",
        step,
        steps,
        loss,
        acc,
        len(window) / max(time.time() - t_log, 1e-9),
    )
    return loss, acc


def _train(
    model: LightCNN29,
    params: PyTree,
    data: _IdentityData,
    sched: _Schedule,
    config: ml_collections.ConfigDict,
) -> tuple[PyTree, float, float]:
    """Adam on the subject-classification loss; returns (params, loss, accuracy), the last two
    averaged over the last logged window."""
    tx = optax.adam(sched.learning_rate)
    opt_state = tx.init(params)
    train_step = _make_train_step(model, tx)
    order, flips = _batch_plan(config.seed, config.data.flip, len(data.x_train), sched)
    window, loss, acc = [], float("nan"), float("nan")
    t_log = time.time()
    with console.progress("identity", sched.steps) as bar:
        for step in range(sched.steps):
            xb, yb = _batch(data, order[step], flips[step])
            params, opt_state, metrics = train_step(params, opt_state, xb, yb)
            window.append(metrics)  # Fetched only at log steps, so steps are not serialised.
            bar.update(step + 1)
            if (step + 1) % sched.log_every == 0 or step + 1 == sched.steps:
                loss, acc = _log_window(window, step + 1, sched.steps, t_log, bar)
                window, t_log = [], time.time()
    return params, loss, acc


def _weights_metadata(config: ml_collections.ConfigDict, data: _IdentityData, steps: int) -> dict:
    """What the saved weights are: layout, sizes, source, and the subject of every fc2 row."""
    return {
        "version": int(config.identity.version),
        "width": float(config.model.width),
        "image_size": data.image_size,
        "num_classes": len(data.subject_ids),
        "source": "pretrain_identity",
        "dataset": data.dataset,
        "fold": int(config.data.fold),
        "steps": steps,
        "subjects": [int(s) for s in data.subject_ids],  # fc2 row i is subjects[i].
    }


def _write_summary(path: str, summary: dict, meta: dict) -> None:
    """`<weights>.json`: the summary and where the weights come from (first process only)."""
    if jax.process_index() == 0:
        keys = ("dataset", "fold", "width", "image_size")
        write_json(path + ".json", {**summary, **{k: meta[k] for k in keys}})


def _log_data(data: _IdentityData, initial_auc: float) -> None:
    logging.info(
        "pretrain_identity: %d training subjects (%d images), %d held-out subjects (%d images); "
        "untrained verification AUC %.3f.",
        len(data.subject_ids),
        len(data.x_train),
        data.num_test_subjects,
        len(data.x_test),
        initial_auc,
    )


def _log_result(summary: dict) -> None:
    logging.info(
        "pretrain_identity: held-out verification AUC %.3f (untrained %.3f), rank-1 %.3f; "
        "weights in %s (use --config.identity.weights=%s).",
        summary["verification_auc"],
        summary["initial_verification_auc"],
        summary["rank1_accuracy"],
        summary["weights"],
        summary["weights"],
    )


def pretrain_identity(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains LightCNN29 (width `config.model.width`) to classify the training split's subjects.

    Data: `config.data` at `config.model.image_size` from `config.data.data_dir` (or
    `<workdir>/tfds` when empty); training images are the fold's training frames, randomly
    flipped when `config.data.flip`. Adam at `identity.pretrain_learning_rate` for
    `identity.pretrain_steps` steps of `identity.pretrain_batch_size` images on one device;
    every key derives from `config.seed`. `config` is only read.

    Writes `<workdir>/identity_weights` (Orbax, the converter's format, fc2 included) and
    `<workdir>/identity_weights.json`; point `identity.weights` at the former to use them
    (`ensure_weights` does).

    Returns:
      {'weights': path, 'verification_auc': float, 'rank1_accuracy': float, 'steps': int,
       'initial_verification_auc': float (same metric before training), 'final_loss',
       'train_accuracy' (last logged window), 'num_train_subjects', 'num_test_subjects',
       'num_train_images', 'num_test_images', 'seconds'}; the AUC is NaN when the held-out
      split has fewer than two subjects.
    """
    sched = _schedule(config.identity)
    data = _identity_data(config, workdir)
    model = LightCNN29(
        config.model.width, len(data.subject_ids), version=int(config.identity.version)
    )
    params = _init_params(model, config.seed, data.image_size)
    console.say(
        f"identity network: {len(data.subject_ids)} training subjects ({len(data.x_train)} "
        "images); compiling ..."
    )
    initial_auc, _ = _held_out_verification(model, params, data)
    _log_data(data, initial_auc)
    start = time.time()
    params, loss, acc = _train(model, params, data, sched, config)
    auc, rank1 = _held_out_verification(model, params, data)

    path = os.path.join(os.path.abspath(workdir), PRETRAINED_DIRNAME)
    meta = _weights_metadata(config, data, sched.steps)
    save_identity_params(path, params, meta, overwrite=True)
    summary = {
        "weights": path,
        "verification_auc": auc,
        "rank1_accuracy": rank1,
        "initial_verification_auc": initial_auc,
        "steps": sched.steps,
        "final_loss": loss,
        "train_accuracy": acc,
        "num_train_subjects": len(data.subject_ids),
        "num_test_subjects": data.num_test_subjects,
        "num_train_images": len(data.x_train),
        "num_test_images": len(data.x_test),
        "seconds": time.time() - start,
    }
    _write_summary(path, summary, meta)
    _log_result(summary)
    return summary
