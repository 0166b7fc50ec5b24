"""PyTorch LightCNN-29 checkpoints -> the Flax LightCNN29 parameter tree.

The release checkpoint (`LightCNN_29Layers_V2_checkpoint.pth.tar`) is a dict whose `state_dict`
maps `module.<name>` to tensors. Names correspond one to one with the Flax tree
(`block1.0.conv1.filter.weight` <-> `block1_0/conv1/filter/kernel`); only layouts differ:

- conv weights are OIHW in torch and HWIO in Flax; the MFM halves need no reordering since both
  frameworks split the output channels into first half / second half in the same order;
- Linear weights are [out, in] in torch and [in, out] in Flax;
- `fc` reads the flattened last feature map, which torch flattens as (C, H, W) and Flax as
  (H, W, C), so its input rows are permuted as well.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fergan.identity.weights import FORMAT, flat_shapes, unflatten
from fergan.models import LightCNN29

PyTree = Any

_PREFIX = "module."  # Added by torch.nn.DataParallel, present in the release files.
_FC_PATHS = {2: "fc/kernel", 1: "fc/filter/kernel"}


def read_checkpoint(path: str) -> dict[str, np.ndarray]:
    """Tensors of a PyTorch checkpoint, read with `torch.load(weights_only=True)`.

    Accepts a dict with a `state_dict` entry (the release format) or a bare state dict.

    Returns:
      {name: float32 array} with torch's names and layouts (a `module.` prefix is kept).

    Raises:
      FileNotFoundError: no such file.
      ImportError: torch is not installed (`pip install 'fergan[torch]'`).
      ValueError: the file is not a PyTorch checkpoint or holds no tensors.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint {path} does not exist or is not a file.")
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "Reading a PyTorch checkpoint needs torch: pip install 'fergan[torch]'."
        ) from e
    try:
        # weights_only: tensors and plain containers only, never arbitrary pickled objects.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types (UnpicklingError, RuntimeError, ...).
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint (torch.load with weights_only=True "
            f"failed: {type(e).__name__}: {reason})."
        ) from e
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{path} holds no state_dict of tensors (got {type(obj).__name__}).")
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ValueError(f"{path}: state_dict entries that are not tensors: {not_tensors}.")
    return {str(k): v.detach().cpu().float().numpy() for k, v in state.items()}


def strip_prefix(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drops the DataParallel `module.` prefix from every name that has it."""
    out = {}
    for name, value in state.items():
        short = name[len(_PREFIX) :] if name.startswith(_PREFIX) else name
        if short in out:
            raise ValueError(
                f"Tensor {short} appears both with and without the '{_PREFIX}' prefix."
            )
        out[short] = value
    return out


def detect_version(state: Mapping[str, np.ndarray]) -> int:
    """2 when `fc.weight` exists (v2), 1 when `fc.filter.weight` does (network_29layers)."""
    if "fc.weight" in state:
        return 2
    if "fc.filter.weight" in state:
        return 1
    raise ValueError(
        "Cannot tell the LightCNN-29 version: neither fc.weight (v2) nor fc.filter.weight (v1) is "
        "in the checkpoint; pass --version."
    )


def torch_name(flax_path: str) -> str:
    """'block1_0/conv1/filter/kernel' -> 'block1.0.conv1.filter.weight'."""
    *modules, leaf = flax_path.split("/")
    modules = [re.sub(r"^(block\d+)_(\d+)$", r"\1.\2", m) for m in modules]
    return ".".join([*modules, {"kernel": "weight", "bias": "bias"}[leaf]])


def _torch_shape(flax_path: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the torch tensor that fills a Flax parameter of `shape`."""
    if len(shape) == 4:  # HWIO -> OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    if len(shape) == 2:  # [in, out] -> [out, in]
        return (shape[1], shape[0])
    return shape


def flax_shapes(version: int, width: float, image_size: int, num_classes: int) -> dict:
    """Flat shapes of the full LightCNN29 tree (fc2 included) for this layout."""
    model = LightCNN29(width, num_classes, version=version)
    tree = jax.eval_shape(
        model.init, jax.random.PRNGKey(0), jnp.zeros((1, image_size, image_size, 1))
    )["params"]
    return flat_shapes(tree)


def _fc_from_torch(weight: np.ndarray, flat_in: int, out: int, grid: int) -> np.ndarray:
    """torch fc weight [out, C*H*W] (NCHW flatten) -> Flax kernel [H*W*C, out] (NHWC flatten)."""
    channels = flat_in // (grid * grid)
    w = weight.reshape(out, channels, grid, grid)  # [out, C, H, W]
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(flat_in, out))


def _version_of(state: Mapping[str, np.ndarray], version: int | None) -> int:
    """`version` checked to be 1 or 2, or detected from the `fc` names when None."""
    version = detect_version(state) if version is None else int(version)
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, got {version}.")
    return version


def _num_classes(state: Mapping[str, np.ndarray]) -> int:
    """Rows of `fc2.weight` [num_classes, 256]: the identity classes the checkpoint was trained
    on (1 when it has no usable fc2, so the model still builds)."""
    fc2 = state.get("fc2.weight")
    return int(fc2.shape[0]) if fc2 is not None and fc2.ndim == 2 else 1


def _mismatches(
    state: Mapping[str, np.ndarray], wanted: dict, names: dict[str, str]
) -> tuple[list[str], list[str], list[str]]:
    """(missing torch names, unused torch names, wrong-shape lines) of `state` against the Flax
    shapes `wanted` ({flax path: shape}) under the name map `names` ({flax path: torch name})."""
    missing = sorted(n for n in names.values() if n not in state)
    unused = sorted(set(state) - set(names.values()))
    wrong = []
    for path, shape in wanted.items():
        name = names[path]
        if name in state and tuple(state[name].shape) != _torch_shape(path, shape):
            wrong.append(
                f"{name}: checkpoint shape {tuple(state[name].shape)}, expected "
                f"{_torch_shape(path, shape)} (Flax {path} {shape})"
            )
    return missing, unused, wrong


def _check_fits(
    state: Mapping[str, np.ndarray], wanted: dict, names: dict[str, str], layout: str, version: int
) -> None:
    """Raises ValueError listing every missing, unused and wrongly shaped tensor at once."""
    missing, unused, wrong = _mismatches(state, wanted, names)
    if not (missing or unused or wrong):
        return
    lines = [f"missing tensor {n}" for n in missing]
    lines += [f"extra tensor {n} {tuple(state[n].shape)} (not in the model)" for n in unused]
    lines += [f"wrong shape for {w}" for w in wrong]
    hint = ""
    if any(n.startswith("fc.") for n in missing + unused) or any("fc." in w for w in wrong):
        hint = f"\n(fc's input is (image_size/16)^2 * 128 * width; v{version} was assumed.)"
    raise ValueError(f"Checkpoint does not match the {layout}:\n  " + "\n  ".join(lines) + hint)


def _to_flax(tensor: np.ndarray, path: str, shape: tuple[int, ...], version: int, grid: int):
    """One torch tensor in the Flax layout of parameter `path` (of Flax `shape`)."""
    t = np.asarray(tensor, np.float32)
    if path == _FC_PATHS[version]:
        return _fc_from_torch(t, shape[0], shape[1], grid)
    if t.ndim == 4:  # OIHW -> HWIO
        return np.ascontiguousarray(t.transpose(2, 3, 1, 0))
    if t.ndim == 2:  # [out, in] -> [in, out]
        return np.ascontiguousarray(t.T)
    return t.copy()


def convert_state_dict(
    state: Mapping[str, np.ndarray],
    *,
    version: int | None = None,
    width: float = 1.0,
    image_size: int = 128,
) -> tuple[PyTree, dict]:
    """Maps every tensor of a LightCNN-29 state dict onto the Flax LightCNN29 tree.

    Args:
      state: {torch name: array}, with or without the `module.` prefix.
      version: 1 or 2; None detects it from the `fc` names.
      width, image_size: the Flax model the tensors must fit (1.0 and 128 for the releases).

    Returns:
      (params, metadata): the nested Flax tree including `fc2` (conv kernels [kh, kw, in, 2*out],
      `fc/kernel` [(S/16)^2 * 128*width, 256*width] for v2), and a dict describing it.

    Raises:
      ValueError: listing every missing tensor, every tensor left unused and every shape that
        does not match (torch name, checkpoint shape and expected shape).
    """
    state = strip_prefix(state)
    version = _version_of(state, version)
    num_classes = _num_classes(state)
    wanted = flax_shapes(version, width, image_size, num_classes)
    names = {path: torch_name(path) for path in wanted}
    layout = f"LightCNN-29 v{version} at image size {image_size}, width {width}"
    _check_fits(state, wanted, names, layout, version)

    grid = image_size // 16
    params = unflatten(
        {
            path: _to_flax(state[names[path]], path, shape, version, grid)
            for path, shape in wanted.items()
        }
    )
    # Each Flax parameter was filled from its own torch name, and the name sets matched exactly,
    # so every tensor was used once; the rebuilt tree must also be exactly the model's.
    if flat_shapes(params) != wanted:
        raise AssertionError("Converted tree differs from the model tree.")
    metadata = {
        "format": FORMAT,
        "version": version,
        "width": float(width),
        "image_size": int(image_size),
        "num_classes": num_classes,
        "num_tensors": len(names),
    }
    return params, metadata
