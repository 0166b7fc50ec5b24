"""--mode pretrain_identity: train LightCNN-29 as a face-identity classifier on the user's data.

Without the published weights, the identity network can still be made meaningful by training it
to tell apart the subjects of the configured training split (their ids are the labels; fc2 has one
output per training subject). The held-out subjects of the fold then measure how well the 256-d
`fc` feature generalises to unseen faces (verification AUC, rank-1). The result is saved in the
converter's format, so `identity.weights` can point at either.
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from fergan import console
from fergan.data.pipeline import build_datasets, eval_arrays
from fergan.identity.verification import rank1_accuracy, verification_auc
from fergan.identity.weights import PRETRAINED_DIRNAME, save_identity_params
from fergan.models import LightCNN29

_EVAL_BATCH = 64  # Images per feature-extraction call (fixed, so it compiles once).


def _lightcnn_input(x: np.ndarray) -> np.ndarray:
    """[N, H, W, C] in [-1, 1] -> [N, H, W, 1] in [0, 1] (numpy twin of to_lightcnn_input)."""
    if x.shape[-1] == 3:
        x = x @ np.asarray([0.299, 0.587, 0.114], np.float32)[:, None]
    return ((x + 1.0) * 0.5).astype(np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _identity_feature(model: LightCNN29, params, x: jax.Array) -> jax.Array:
    return model.apply({"params": params}, x, method=LightCNN29.identity_feature)


def extract_features(model: LightCNN29, params, x: np.ndarray) -> np.ndarray:
    """F_id for [N, S, S, 1] images in [0, 1] -> [N, 256*width], in fixed-size batches."""
    out = []
    for start in range(0, len(x), _EVAL_BATCH):
        batch = x[start : start + _EVAL_BATCH]
        pad = _EVAL_BATCH - len(batch)
        padded = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
        out.append(np.asarray(_identity_feature(model, params, padded))[: len(batch)])
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def _verification(features: np.ndarray, subjects: np.ndarray) -> tuple[float, float]:
    """(AUC, rank-1) or NaNs when the held-out split cannot form both kinds of pairs."""
    try:
        return verification_auc(features, subjects), rank1_accuracy(features, subjects)
    except ValueError as e:
        logging.warning("Identity verification skipped: %s", e)
        return float("nan"), float("nan")


def _batch_indices(rng: np.random.Generator, n: int, batch: int, steps: int) -> np.ndarray:
    """[steps, batch] indices: consecutive reshuffled passes over the n training images."""
    passes = -(-steps * batch // n)
    order = np.concatenate([rng.permutation(n) for _ in range(passes)])
    return order[: steps * batch].reshape(steps, batch)


def pretrain_identity(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains LightCNN29 (width `config.model.width`) to classify the training split's subjects.

    Data: `config.data` at `config.model.image_size` from `config.data.data_dir` (or
    `<workdir>/tfds` when empty); training images are the fold's training frames, randomly
    flipped when `config.data.flip`. Adam at `identity.pretrain_learning_rate` for
    `identity.pretrain_steps` steps of `identity.pretrain_batch_size` images on one device;
    every key derives from `config.seed`.

    Writes `<workdir>/identity_weights` (Orbax, the converter's format, fc2 included) and
    `<workdir>/identity_weights.json`, and points `config.identity.weights` at the weights.

    Returns:
      {'weights': path, 'verification_auc': float, 'rank1_accuracy': float, 'steps': int,
       'initial_verification_auc': float (same metric before training), 'final_loss',
       'train_accuracy' (last logged window), 'num_train_subjects', 'num_test_subjects',
       'num_train_images', 'num_test_images', 'seconds'}; the AUC is NaN when the held-out
      split has fewer than two subjects.
    """
    ic = config.identity
    steps = int(ic.pretrain_steps)
    batch = int(ic.pretrain_batch_size)
    log_every = max(int(ic.pretrain_log_every), 1)
    if steps < 1 or batch < 1:
        raise ValueError(
            f"identity.pretrain_steps={steps} and identity.pretrain_batch_size={batch} must both "
            "be >= 1."
        )
    data_dir = config.data.data_dir or os.path.join(workdir, "tfds")
    datasets = build_datasets(config, data_dir)
    train, test = eval_arrays(datasets, "train"), eval_arrays(datasets, "test")
    subject_ids, labels = np.unique(train["subject"], return_inverse=True)
    if len(subject_ids) < 2:
        raise ValueError(
            f"pretrain_identity needs at least 2 training subjects; fold {config.data.fold} of "
            f"{datasets.name} has {len(subject_ids)}."
        )
    x_train, x_test = _lightcnn_input(train["x"]), _lightcnn_input(test["x"])
    labels = labels.astype(np.int32)
    size = x_train.shape[1]

    model = LightCNN29(config.model.width, len(subject_ids), version=int(ic.version))
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x1D)  # Apart from init_state's keys.
    params = model.init(key, jnp.zeros((1, size, size, 1)))["params"]
    tx = optax.adam(float(ic.pretrain_learning_rate))
    opt_state = tx.init(params)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, x, y):
        def loss_fn(p):
            logits, _ = model.apply({"params": p}, x)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, jnp.mean(jnp.argmax(logits, -1) == y)

        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, jnp.stack([loss, acc])

    console.say(
        f"identity network: {len(subject_ids)} training subjects ({len(x_train)} images); "
        "compiling ..."
    )
    initial_auc, _ = _verification(extract_features(model, params, x_test), test["subject"])
    logging.info(
        "pretrain_identity: %d training subjects (%d images), %d held-out subjects (%d images); "
        "untrained verification AUC %.3f.",
        len(subject_ids),
        len(x_train),
        len(np.unique(test["subject"])),
        len(x_test),
        initial_auc,
    )

    rng = np.random.default_rng([int(config.seed), 0x1D])
    order = _batch_indices(rng, len(x_train), batch, steps)
    flips = rng.random((steps, batch)) < 0.5 if config.data.flip else np.zeros((steps, batch), bool)
    window, loss, acc = [], float("nan"), float("nan")
    start = t_log = time.time()
    with console.progress("identity", steps) as bar:
        for step in range(steps):
            xb = x_train[order[step]]
            xb = np.where(flips[step][:, None, None, None], xb[:, :, ::-1], xb)
            params, opt_state, metrics = train_step(params, opt_state, xb, labels[order[step]])
            window.append(metrics)  # Fetched only at log steps, so steps are not serialised.
            bar.update(step + 1)
            if (step + 1) % log_every == 0 or step + 1 == steps:
                loss, acc = np.mean(np.asarray(jax.device_get(window)), axis=0).tolist()
                bar.metrics({"loss": loss, "acc": acc})
                logging.info(
                    "pretrain_identity step %d/%d: loss %.4f, train accuracy %.3f (%.1f steps/s).",
                    step + 1,
                    steps,
                    loss,
                    acc,
                    len(window) / max(time.time() - t_log, 1e-9),
                )
                window, t_log = [], time.time()

    features = extract_features(model, params, x_test)
    auc, rank1 = _verification(features, test["subject"])
    path = os.path.join(os.path.abspath(workdir), PRETRAINED_DIRNAME)
    meta = {
        "version": int(ic.version),
        "width": float(config.model.width),
        "image_size": int(size),
        "num_classes": len(subject_ids),
        "source": "pretrain_identity",
        "dataset": datasets.name,
        "fold": int(config.data.fold),
        "steps": steps,
        "subjects": [int(s) for s in subject_ids],  # fc2 row i is training subject subjects[i].
    }
    save_identity_params(path, params, meta, overwrite=True)
    summary = {
        "weights": path,
        "verification_auc": auc,
        "rank1_accuracy": rank1,
        "initial_verification_auc": initial_auc,
        "steps": steps,
        "final_loss": loss,
        "train_accuracy": acc,
        "num_train_subjects": len(subject_ids),
        "num_test_subjects": len(np.unique(test["subject"])),
        "num_train_images": len(x_train),
        "num_test_images": len(x_test),
        "seconds": time.time() - start,
    }
    if jax.process_index() == 0:
        with open(path + ".json", "w") as f:
            json.dump(
                {**summary, **{k: meta[k] for k in ("dataset", "fold", "width", "image_size")}},
                f,
                indent=2,
                allow_nan=True,
            )
    config.identity.weights = path  # Later stages of this run use the new weights.
    logging.info(
        "pretrain_identity: held-out verification AUC %.3f (untrained %.3f), rank-1 %.3f; "
        "weights in %s (use --config.identity.weights=%s).",
        auc,
        initial_auc,
        rank1,
        path,
        path,
    )
    return summary
