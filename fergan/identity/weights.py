"""LightCNN-29 identity weights on disk: one Orbax format for converted and self-trained weights.

A weights directory is an Orbax composite checkpoint with two items: `params`, the LightCNN29
parameter tree (`fc2` included when the source had it), and `meta`, a JSON dict with at least
`format`, `version`, `width`, `image_size` and `num_classes`. Training only ever uses the tree
without `fc2` (what `init_state` builds with `method=LightCNN29.features`).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from fergan.methods.fesr.networks import Networks
from fergan.models import LightCNN29

PyTree = Any

FORMAT = "fergan.lightcnn29"
PARAMS_ITEM = "params"
META_ITEM = "meta"
# Where --mode pretrain_identity saves, relative to the workdir.
PRETRAINED_DIRNAME = "identity_weights"

_warned_untrained = False  # One warning per process (identity_params_for).


def _checkpointer() -> ocp.Checkpointer:
    # Handlers named per item so metadata() can read shapes before anything is restored.
    return ocp.Checkpointer(
        ocp.CompositeCheckpointHandler(
            **{PARAMS_ITEM: ocp.StandardCheckpointHandler(), META_ITEM: ocp.JsonCheckpointHandler()}
        )
    )


def flat_shapes(tree: PyTree) -> dict[str, tuple[int, ...]]:
    """{'block1_0/conv1/filter/kernel': shape, ...} for a parameter (or shape) tree."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
        for path, leaf in leaves
    }


def save_identity_params(
    path: str, params: PyTree, metadata: dict | None = None, *, overwrite: bool = False
) -> str:
    """Saves a LightCNN29 parameter tree (with or without `fc2`) and its metadata with Orbax.

    Args:
      path: target directory (made absolute; Orbax needs that).
      params: nested dict of float arrays, e.g. conv kernels [kh, kw, in, 2*out] (HWIO),
        `fc/kernel` [(S/16)^2 * 128*width, 256*width].
      metadata: JSON-serialisable facts about the weights (version, width, image_size, source...).
      overwrite: replace an existing directory instead of raising FileExistsError.

    Returns:
      The absolute path written.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True (--overwrite) to replace it."
        )
    meta = {"format": FORMAT, **(metadata or {})}
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    with _checkpointer() as ckpt:
        ckpt.save(
            path,
            args=ocp.args.Composite(
                **{PARAMS_ITEM: ocp.args.StandardSave(params), META_ITEM: ocp.args.JsonSave(meta)}
            ),
            force=overwrite,
        )
    return path


def _check_dir(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"identity.weights={path} does not exist.")
    if not os.path.isdir(os.path.join(path, PARAMS_ITEM)):
        raise ValueError(
            f"identity.weights={path} is not a fergan identity-weights directory (no "
            f"'{PARAMS_ITEM}' item). Convert a PyTorch checkpoint with "
            "`python -m fergan.tools.convert_lightcnn <checkpoint> <out>` or run "
            "--mode pretrain_identity, and point identity.weights at the result."
        )


def read_identity_metadata(path: str) -> dict:
    """The JSON `meta` item of a weights directory (version, width, image_size, source, ...)."""
    path = os.path.abspath(os.path.expanduser(path))
    _check_dir(path)
    with _checkpointer() as ckpt:
        restored = ckpt.restore(
            path, args=ocp.args.Composite(**{META_ITEM: ocp.args.JsonRestore()})
        )
    return dict(restored[META_ITEM] or {})


def expected_identity_shapes(nets: Networks) -> dict[str, tuple[int, ...]]:
    """Flat shapes of the identity tree `init_state` builds for `nets` (no `fc2`)."""
    size = nets.image_size
    tree = jax.eval_shape(
        lambda x: nets.identity.init(jax.random.PRNGKey(0), x, method=LightCNN29.features),
        jnp.zeros((1, size, size, 1)),
    )["params"]
    return flat_shapes(tree)


def load_identity_params(path: str, nets: Networks) -> PyTree:
    """Restores identity weights for `nets`: the LightCNN29 tree without `fc2`, as numpy float32.

    Every parameter is checked against the model built from the config (its width, image size
    and version) before anything is read. The published weights fit only image_size 128 and
    width 1.0, since `fc` takes the flattened (S/16) x (S/16) x 128 map.

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: not a weights directory, another LightCNN version, or a missing, extra or
        wrongly shaped parameter (named with both shapes).
    """
    path = os.path.abspath(os.path.expanduser(path))
    _check_dir(path)
    model: LightCNN29 = nets.identity
    meta = read_identity_metadata(path)
    saved_version = int(meta.get("version", 2))
    if saved_version != model.version:
        raise ValueError(
            f"identity.weights={path} holds LightCNN-29 v{saved_version} weights but the model is "
            f"v{model.version}; set identity.version={saved_version}."
        )
    with _checkpointer() as ckpt:
        saved_tree = ckpt.metadata(path).item_metadata[PARAMS_ITEM].tree
    saved = flat_shapes(saved_tree)
    wanted = expected_identity_shapes(nets)
    # fc2 (identity logits) is never used in training; a file may carry it.
    saved_used = {k: v for k, v in saved.items() if not k.startswith("fc2/")}
    where = (
        f"model.image_size={nets.image_size}, model.width={model.width} (published LightCNN-29 "
        f"weights fit only image_size 128, width 1.0; these weights were made for image_size="
        f"{meta.get('image_size', '?')}, width={meta.get('width', '?')})"
    )
    problems = [
        f"missing parameter {k} (model expects shape {wanted[k]})"
        for k in wanted
        if k not in saved_used
    ]
    problems += [
        f"extra parameter {k} {saved_used[k]} not in the model"
        for k in saved_used
        if k not in wanted
    ]
    problems += [
        f"parameter {k} has shape {saved_used[k]} in the file but {wanted[k]} in the model"
        for k in wanted
        if k in saved_used and saved_used[k] != wanted[k]
    ]
    if problems:
        raise ValueError(
            f"identity.weights={path} does not fit the identity network at {where}:\n  "
            + "\n  ".join(problems)
        )
    target = {}
    for key, shape in saved.items():  # Orbax restores the whole tree; fc2 is dropped after.
        node = target
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.zeros(shape, np.float32)
    with _checkpointer() as ckpt:
        restored = ckpt.restore(
            path, args=ocp.args.Composite(**{PARAMS_ITEM: ocp.args.StandardRestore(target)})
        )[PARAMS_ITEM]
    restored = dict(restored)
    restored.pop("fc2", None)
    return jax.tree.map(lambda a: np.asarray(a, np.float32), restored)


def resolve_weights_path(weights: str, workdir: str | None = None) -> str:
    """`identity.weights` as given, else relative to `workdir`; FileNotFoundError naming both."""
    path = os.path.expanduser(weights)
    if os.path.exists(path) or os.path.isabs(path) or not workdir:
        if not os.path.exists(path):
            raise FileNotFoundError(f"identity.weights={weights} does not exist.")
        return os.path.abspath(path)
    joined = os.path.join(workdir, path)
    if not os.path.exists(joined):
        raise FileNotFoundError(
            f"identity.weights={weights} does not exist (looked in the current directory and in "
            f"the workdir {workdir})."
        )
    return os.path.abspath(joined)


def untrained_warning(workdir: str | None = None) -> str:
    """The text of the warning logged when `identity.weights` is unset."""
    found = ""
    if workdir and os.path.isdir(os.path.join(workdir, PRETRAINED_DIRNAME)):
        found = (
            f" Pretrained weights already exist at {os.path.join(workdir, PRETRAINED_DIRNAME)}: "
            "pass that path as --config.identity.weights to use them."
        )
    return (
        "!!! identity.weights is unset: the LightCNN-29 identity network (F_id in the "
        "identity-preserving loss, Eq. 12, and the frozen trunk of the recognizer R) is "
        "UNTRAINED (random weights). Identity features are meaningless and RESULTS ARE NOT THE "
        "PAPER'S. To fix: convert the published LightCNN_29Layers_V2_checkpoint.pth.tar with "
        "`python -m fergan.tools.convert_lightcnn <checkpoint> <out>` and set "
        "--config.identity.weights=<out> (fits image_size 128, width 1.0), or train one on this "
        "dataset's subjects with --mode pretrain_identity and set --config.identity.weights="
        f"<workdir>/{PRETRAINED_DIRNAME}.{found} !!!"
    )


def identity_params_for(
    config: ml_collections.ConfigDict, nets: Networks, workdir: str | None = None
) -> PyTree | None:
    """Identity params for a run: loaded from `config.identity.weights`, or None (untrained).

    With no weights configured this logs one loud warning per process and returns None, so
    `init_state` draws random identity parameters. A relative `identity.weights` is looked up in
    the current directory, then in `workdir`.
    """
    global _warned_untrained
    weights = config.identity.weights
    if weights:
        path = resolve_weights_path(weights, workdir)
        params = load_identity_params(path, nets)
        logging.info("Identity network: LightCNN-29 weights from %s.", path)
        return params
    if not _warned_untrained:
        _warned_untrained = True
        logging.warning(untrained_warning(workdir))
    return None
