"""The set of networks one run trains, built from the config."""

import dataclasses

import jax.numpy as jnp
import ml_collections

from fergan.models import Dimg, Dz, Generator, LightCNN29, RecognizerHead
from fergan.models.layers import num_halvings


@dataclasses.dataclass(frozen=True)
class Networks:
    """Module definitions (no parameters): G, Dimg, Dz, the frozen LightCNN-29 and R's head.

    `finetune_trunk`: R trains its own copy of the LightCNN trunk (`recognizer.trunk`
    'finetune'); False = R runs on the frozen identity network's trunk (the paper).
    """

    generator: Generator
    dimg: Dimg
    dz: Dz
    identity: LightCNN29
    recognizer: RecognizerHead
    image_size: int
    channels: int
    latent_dim: int
    num_classes: int
    inference_off_value: float = 0.5  # u at inference: intensity of the other classes.
    finetune_trunk: bool = False


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
RECOGNIZER_TRUNKS = ("frozen", "finetune")


def build_networks(
    model: ml_collections.ConfigDict,
    with_dimg_cls: bool = True,
    lightcnn_version: int = 2,
    recognizer_trunk: str = "frozen",
) -> Networks:
    """Instantiate every network from `config.model` (validated); `lightcnn_version` is
    `config.identity.version` (the layout of the identity network's weights) and
    `recognizer_trunk` is `config.recognizer.trunk` (one of RECOGNIZER_TRUNKS).

    `model.compute_dtype` "bfloat16" runs every layer in bfloat16 while parameters, optimizer
    states and losses stay float32 (mixed precision for accelerators)."""
    num_halvings(model.image_size)  # Raises naming model.image_size when unsupported.
    if model.channels not in (1, 3):
        raise ValueError(f"model.channels={model.channels} is not supported; allowed: (1, 3)")
    if not model.width > 0:
        raise ValueError(f"model.width={model.width} must be > 0")
    generator_width = model.get("generator_width", 0.0) or model.width
    if not generator_width > 0:
        raise ValueError(f"model.generator_width={model.generator_width} must be >= 0")
    if model.num_classes < 2:
        raise ValueError(f"model.num_classes={model.num_classes} must be >= 2")
    dtype_name = model.get("compute_dtype", "float32")
    if dtype_name not in COMPUTE_DTYPES:
        raise ValueError(
            f"model.compute_dtype={dtype_name!r} is unknown; allowed: {tuple(COMPUTE_DTYPES)}"
        )
    dtype = COMPUTE_DTYPES[dtype_name]
    if recognizer_trunk not in RECOGNIZER_TRUNKS:
        raise ValueError(
            f"recognizer.trunk={recognizer_trunk!r} is unknown; allowed: {RECOGNIZER_TRUNKS}"
        )
    return Networks(
        generator=Generator(
            model.image_size, generator_width, model.channels, model.latent_dim, dtype
        ),
        dimg=Dimg(model.image_size, model.width, model.num_classes, with_dimg_cls, dtype),
        dz=Dz(model.width, dtype),
        identity=LightCNN29(
            model.width, model.lightcnn_classes, version=lightcnn_version, dtype=dtype
        ),
        recognizer=RecognizerHead(model.width, model.num_classes, dtype),
        image_size=model.image_size,
        channels=model.channels,
        latent_dim=model.latent_dim,
        num_classes=model.num_classes,
        inference_off_value=model.inference_off_value,
        finetune_trunk=recognizer_trunk == "finetune",
    )
