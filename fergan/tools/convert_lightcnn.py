"""Convert a PyTorch LightCNN-29 checkpoint to fergan's Orbax identity weights.

Usage:
  python -m fergan.tools.convert_lightcnn LightCNN_29Layers_V2_checkpoint.pth.tar weights/lightcnn29
  then run with --config.identity.weights=weights/lightcnn29 (image_size 128, width 1.0).

The first argument is the PyTorch checkpoint (.pth.tar) of LightCNN-29 v1 or v2, the second the
output directory (Orbax) for identity.weights.

Needs torch (`pip install 'fergan[torch]'`); the file is read with `weights_only=True`.
"""

from __future__ import annotations

from absl import flags

from fergan.identity.convert import convert_state_dict, read_checkpoint
from fergan.identity.weights import save_identity_params
from fergan.tools import cli

USAGE = (
    "python -m fergan.tools.convert_lightcnn CHECKPOINT OUT "
    "[--version auto|1|2] [--width W] [--image_size S] [--overwrite]"
)


def convert(
    checkpoint: str,
    out: str,
    *,
    version: int | None = None,
    width: float = 1.0,
    image_size: int = 128,
    overwrite: bool = False,
) -> dict:
    """Reads `checkpoint`, converts every tensor and saves the tree to `out`.

    Returns:
      The saved metadata (version, width, image_size, num_classes, num_tensors, source, path).
    """
    state = read_checkpoint(checkpoint)
    try:
        params, meta = convert_state_dict(
            state, version=version, width=width, image_size=image_size
        )
    except ValueError as e:
        raise ValueError(f"{checkpoint}: {e}") from e
    meta["source"] = checkpoint
    meta["path"] = save_identity_params(out, params, meta, overwrite=overwrite)
    return meta


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """--version, --width, --image_size, --overwrite; the checkpoint and the output directory are
    the positional arguments."""
    flags.DEFINE_enum(
        "version",
        "auto",
        ["auto", "1", "2"],
        "Layout: 2 = LightCNN-29 v2, 1 = network_29layers; auto detects it from fc.",
        flag_values=flag_values,
    )
    flags.DEFINE_float("width", 1.0, "Width multiplier (1.0 = release).", flag_values=flag_values)
    flags.DEFINE_integer(
        "image_size",
        128,
        "Input size the weights are for (128 = release).",
        flag_values=flag_values,
    )
    flags.DEFINE_bool("overwrite", False, "Replace an existing output.", flag_values=flag_values)


def main(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> int:
    """The program, given argv = [program, checkpoint, out] after flag parsing: 0 after the
    conversion, 1 on a bad input (its message on one line), 2 on a wrong command line."""
    if len(argv) != 3:
        return cli.error(
            f"expected 2 arguments (checkpoint, output directory), got {len(argv) - 1}; "
            f"usage: {USAGE}"
        )
    version = None if flag_values.version == "auto" else int(flag_values.version)
    try:
        meta = convert(
            argv[1],
            argv[2],
            version=version,
            width=flag_values.width,
            image_size=flag_values.image_size,
            overwrite=flag_values.overwrite,
        )
    except (FileNotFoundError, FileExistsError, ImportError, ValueError) as e:
        return cli.error(str(e), code=1)
    print(
        f"Converted {meta['num_tensors']} tensors of LightCNN-29 v{meta['version']} "
        f"({meta['num_classes']} identity classes) to {meta['path']}.\n"
        f"Use it with --config.identity.weights={meta['path']} "
        f"(model.image_size={meta['image_size']}, model.width={meta['width']})."
    )
    return 0


if __name__ == "__main__":
    cli.run(main, define_flags)
