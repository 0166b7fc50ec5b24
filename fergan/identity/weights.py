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

from fergan.identity.network import identity_network
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


def expected_identity_shapes(model: LightCNN29, image_size: int) -> dict[str, tuple[int, ...]]:
    """Flat shapes of the identity tree `init_state` builds for `model` on [1, S, S, 1] images,
    S = `image_size` (no `fc2`: training runs `LightCNN29.features`)."""
    tree = jax.eval_shape(
        lambda x: model.init(jax.random.PRNGKey(0), x, method=LightCNN29.features),
        jnp.zeros((1, image_size, image_size, 1)),
    )["params"]
    return flat_shapes(tree)


def unflatten(flat: dict[str, Any]) -> dict:
    """{'a/b/kernel': leaf} -> {'a': {'b': {'kernel': leaf}}} (the inverse of `flat_shapes`'
    key paths)."""
    tree: dict = {}
    for path, leaf in flat.items():
        node = tree
        *parents, name = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[name] = leaf
    return tree


def _check_version(path: str, meta: dict, model: LightCNN29) -> None:
    """Raises ValueError when the weights hold another LightCNN-29 layout than `model`."""
    saved_version = int(meta.get("version", 2))
    if saved_version != model.version:
        raise ValueError(
            f"identity.weights={path} holds LightCNN-29 v{saved_version} weights but the model is "
            f"v{model.version}; set identity.version={saved_version}."
        )


def _saved_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Flat shapes of the `params` item, read from Orbax's metadata (no array is loaded)."""
    with _checkpointer() as ckpt:
        saved_tree = ckpt.metadata(path).item_metadata[PARAMS_ITEM].tree
    return flat_shapes(saved_tree)


def _shape_problems(saved: dict, wanted: dict) -> list[str]:
    """One line per parameter missing from `saved`, extra in it, or of another shape."""
    problems = [
        f"missing parameter {k} (model expects shape {wanted[k]})" for k in wanted if k not in saved
    ]
    problems += [
        f"extra parameter {k} {saved[k]} not in the model" for k in saved if k not in wanted
    ]
    problems += [
        f"parameter {k} has shape {saved[k]} in the file but {wanted[k]} in the model"
        for k in wanted
        if k in saved and saved[k] != wanted[k]
    ]
    return problems


def _check_shapes(path: str, meta: dict, saved: dict, model: LightCNN29, image_size: int) -> None:
    """Raises ValueError listing every mismatch between the file's tree (fc2 aside) and the
    tree `model` builds at `image_size`, with the config keys that set the model's shapes."""
    # fc2 (identity logits) is never used in training; a file may carry it.
    saved_used = {k: v for k, v in saved.items() if not k.startswith("fc2/")}
    problems = _shape_problems(saved_used, expected_identity_shapes(model, image_size))
    if not problems:
        return
    where = (
        f"model.image_size={image_size}, model.width={model.width} (published LightCNN-29 "
        f"weights fit only image_size 128, width 1.0; these weights were made for image_size="
        f"{meta.get('image_size', '?')}, width={meta.get('width', '?')})"
    )
    raise ValueError(
        f"identity.weights={path} does not fit the identity network at {where}:\n  "
        + "\n  ".join(problems)
    )


def _restore_params(path: str, saved: dict[str, tuple[int, ...]]) -> PyTree:
    """The whole `params` item as numpy float32, restored into a tree of `saved`'s shapes."""
    target = unflatten({k: np.zeros(shape, np.float32) for k, shape in saved.items()})
    with _checkpointer() as ckpt:
        restored = ckpt.restore(
            path, args=ocp.args.Composite(**{PARAMS_ITEM: ocp.args.StandardRestore(target)})
        )[PARAMS_ITEM]
    return jax.tree.map(lambda a: np.asarray(a, np.float32), dict(restored))


def load_identity_params(path: str, model: LightCNN29, image_size: int) -> PyTree:
    """Restores identity weights for `model` on S x S images, S = `image_size`: the LightCNN29
    tree without `fc2`, as numpy float32 (conv kernels [kh, kw, in, 2*out], `fc/kernel`
    [(S/16)^2 * 128*width, 256*width] for v2).

    Every parameter is checked against the model (its width and version) at `image_size` before
    anything is read. The published weights fit only image_size 128 and width 1.0, since `fc`
    takes the flattened (S/16) x (S/16) x 128 map.

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: not a weights directory, another LightCNN version, or a missing, extra or
        wrongly shaped parameter (named with both shapes).
    """
    path = os.path.abspath(os.path.expanduser(path))
    _check_dir(path)
    meta = read_identity_metadata(path)
    _check_version(path, meta, model)
    saved = _saved_shapes(path)
    _check_shapes(path, meta, saved, model, image_size)
    restored = _restore_params(path, saved)  # Orbax restores the whole tree; fc2 is dropped.
    restored.pop("fc2", None)
    return restored


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
    config: ml_collections.ConfigDict, workdir: str | None = None
) -> PyTree | None:
    """Identity params for a run: loaded from `config.identity.weights`, or None (untrained).

    The weights are checked against `identity_network(config)` at `config.model.image_size`.
    With no weights configured this logs one loud warning per process and returns None, so
    `init_state` draws random identity parameters. A relative `identity.weights` is looked up in
    the current directory, then in `workdir`.
    """
    global _warned_untrained
    weights = config.identity.weights
    if weights:
        path = resolve_weights_path(weights, workdir)
        params = load_identity_params(path, identity_network(config), int(config.model.image_size))
        logging.info("Identity network: LightCNN-29 weights from %s.", path)
        return params
    if not _warned_untrained:
        _warned_untrained = True
        logging.warning(untrained_warning(workdir))
    return None
