"""The identity weights a run uses, decided from the config alone (the config is never changed)."""

from __future__ import annotations

import os

import ml_collections

from fergan import console
from fergan.identity import pretrain
from fergan.identity.weights import META_ITEM, PARAMS_ITEM, PRETRAINED_DIRNAME, resolve_weights_path


def _is_complete(path: str) -> bool:
    """True when `path` holds both items of a weights directory.

    Orbax writes a checkpoint under a temporary name and renames it when done, so a directory
    at the final name with both items is a finished save.
    """
    return all(os.path.isdir(os.path.join(path, item)) for item in (PARAMS_ITEM, META_ITEM))


def ensure_weights(config: ml_collections.ConfigDict, folder: str) -> str:
    """The absolute path of the identity weights a run in `folder` should load, or '' (untrained).

    - `identity.weights` set: that path, as given or relative to `folder` (FileNotFoundError
      when neither exists).
    - else `identity.pretrain`: `<folder>/identity_weights`, trained first by
      `pretrain_identity(config, folder)` unless a finished save is already there.
    - else '': the identity network stays untrained.
    """
    if config.identity.weights:
        return resolve_weights_path(config.identity.weights, folder)
    if not config.identity.pretrain:
        return ""
    path = os.path.abspath(os.path.join(folder, PRETRAINED_DIRNAME))
    if not _is_complete(path):
        console.say(f"identity.pretrain: training the identity network into {path}")
        pretrain.pretrain_identity(config, folder)
    return path
