"""Convert a PyTorch LightCNN-29 checkpoint to fergan's Orbax identity weights.

Usage:
  python -m fergan.tools.convert_lightcnn LightCNN_29Layers_V2_checkpoint.pth.tar weights/lightcnn29
  then run with --config.identity.weights=weights/lightcnn29 (image_size 128, width 1.0).

Needs torch (`pip install 'fergan[torch]'`); the file is read with `weights_only=True`.
"""

from __future__ import annotations

import argparse
import sys

from fergan.identity.convert import convert_state_dict, read_checkpoint
from fergan.identity.weights import save_identity_params


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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fergan.tools.convert_lightcnn", description=__doc__.splitlines()[0]
    )
    p.add_argument("checkpoint", help="PyTorch checkpoint (.pth.tar) of LightCNN-29 v1 or v2.")
    p.add_argument("out", help="Output directory (Orbax) for identity.weights.")
    p.add_argument(
        "--version",
        choices=("auto", "1", "2"),
        default="auto",
        help="Layout: 2 = LightCNN-29 v2, 1 = network_29layers; auto detects it from fc.",
    )
    p.add_argument("--width", type=float, default=1.0, help="Width multiplier (1.0 = release).")
    p.add_argument(
        "--image_size",
        type=int,
        default=128,
        help="Input size the weights are for (128 = release).",
    )
    p.add_argument("--overwrite", action="store_true", help="Replace an existing output.")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 on a bad input, with its message)."""
    args = _parser().parse_args(argv)
    version = None if args.version == "auto" else int(args.version)
    try:
        meta = convert(
            args.checkpoint,
            args.out,
            version=version,
            width=args.width,
            image_size=args.image_size,
            overwrite=args.overwrite,
        )
    except (FileNotFoundError, FileExistsError, ImportError, ValueError) as e:
        print(f"convert_lightcnn: error: {e}", file=sys.stderr)
        return 1
    print(
        f"Converted {meta['num_tensors']} tensors of LightCNN-29 v{meta['version']} "
        f"({meta['num_classes']} identity classes) to {meta['path']}.\n"
        f"Use it with --config.identity.weights={meta['path']} "
        f"(model.image_size={meta['image_size']}, model.width={meta['width']})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
