"""The set of networks one run trains, built from the config."""

import dataclasses

import ml_collections

from fergan.models import Dimg, Dz, Generator, LightCNN29, RecognizerHead
from fergan.models.layers import num_halvings


@dataclasses.dataclass(frozen=True)
class Networks:
    """Module definitions (no parameters): G, Dimg, Dz, the frozen LightCNN-29 and R's head."""

    generator: Generator
    dimg: Dimg
    dz: Dz
    identity: LightCNN29
    recognizer: RecognizerHead
    image_size: int
    channels: int
    latent_dim: int
    num_classes: int


def build_networks(model: ml_collections.ConfigDict, with_dimg_cls: bool = True) -> Networks:
    """Instantiate every network from `config.model` (validated)."""
    num_halvings(model.image_size)  # Raises naming model.image_size when unsupported.
    if model.channels not in (1, 3):
        raise ValueError(f"model.channels={model.channels} is not supported; allowed: (1, 3)")
    if not model.width > 0:
        raise ValueError(f"model.width={model.width} must be > 0")
    if model.num_classes < 2:
        raise ValueError(f"model.num_classes={model.num_classes} must be >= 2")
    return Networks(
        generator=Generator(model.image_size, model.width, model.channels, model.latent_dim),
        dimg=Dimg(model.image_size, model.width, model.num_classes, with_dimg_cls),
        dz=Dz(model.width),
        identity=LightCNN29(model.width, model.lightcnn_classes),
        recognizer=RecognizerHead(model.width, model.num_classes),
        image_size=model.image_size,
        channels=model.channels,
        latent_dim=model.latent_dim,
        num_classes=model.num_classes,
    )
