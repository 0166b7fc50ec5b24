"""ECGAN's variants, static hyper-parameters and built model (paper ecgan; the decisions where
it is silent are in docs/methods.md).

A run has two stages. Stage 1 (`ecgan.epochs` passes over the labelled training frames) trains
the two generators and the two discriminators, LSGAN (Eq. 1), on unpaired batches: B expressive
faces y with their expressions z_y and B neutral faces x of the training subjects, each asked
for z = the expression of the expressive face in its batch slot (so z follows the data's class
frequencies). Adam at `ecgan.learning_rate` (2e-4, beta1 0.5), constant, then linear decay to 0
over the last `optim.decay_fraction` (CycleGAN: the second half).

Stage 2 (`ecgan.recognizer_epochs`) trains two recognizers side by side on the same batches, the
generators frozen: `r` on the real expressive faces plus G_XY(x, z) labelled z (Table 2's
"+generated" row) and `r_original` on the real faces alone (its "original" rows: the baseline,
and the classifier that scores generated faces). So one run gives all three rows of Table 2.
"""

import dataclasses

import flax.linen as nn
import ml_collections

from fergan.config_utils import check_at_least
from fergan.data import builders
from fergan.methods.ecgan.losses import MASK_LOSSES
from fergan.methods.ecgan.networks import PatchDiscriminator, ResnetGenerator
from fergan.models import Generator, LightCNN29, RecognizerHead
from fergan.models.layers import check_model_keys
from fergan.training import recognition
from fergan.training.optim import linear_decay

GENERATORS = ("resnet", "fesr")


@dataclasses.dataclass(frozen=True)
class EcganVariant:
    """Switches of one variant; the defaults are the full method."""

    mask: bool = True  # The face-mask loss (Eq. 5).
    context: bool = True  # The context loss (Eq. 3, as a cycle-perceptual loss on LightCNN).


VARIANTS = {
    "ECGAN": EcganVariant(),
    "ECGAN-M": EcganVariant(mask=False),
    "ECGAN-C": EcganVariant(context=False),
}


@dataclasses.dataclass(frozen=True)
class EcganHParams:
    """Everything the jitted iteration needs besides arrays; hashable."""

    variant: EcganVariant
    gan_steps: int  # Stage 1.
    recognizer_steps: int  # Stage 2.
    learning_rate: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    decay_fraction: float = 0.5
    lambda_cyc: float = 10.0
    lambda_id: float = 5.0
    lambda_context: float = 1.0
    lambda_mask: float = 10.0
    mask_loss: str = "weighted"
    recognizer_learning_rate: float = 1e-4

    @property
    def total_steps(self) -> int:
        return self.gan_steps + self.recognizer_steps

    def learning_rate_at(self, step):
        """The generators' and discriminators' rate in stage 1."""
        decay = max(1, round(self.gan_steps * self.decay_fraction))
        return linear_decay(self.learning_rate, step, self.gan_steps, decay)

    def recognizer_rate_at(self, step):
        """The recognizers' rate in stage 2, decayed the same way over its stage."""
        decay = max(1, round(self.recognizer_steps * self.decay_fraction))
        return linear_decay(self.recognizer_learning_rate, step, self.total_steps, decay)


@dataclasses.dataclass(frozen=True)
class EcganModel:
    """Hashable (no arrays): jitted functions take it as a static argument. One generator
    definition serves G_XY and G_YX (two parameter sets); `d_y` is conditional, `d_x` not."""

    generator: nn.Module  # (x [B, S, S, c], z [B, K]) -> [B, S, S, c].
    d_x: PatchDiscriminator
    d_y: PatchDiscriminator
    hp: EcganHParams
    identity: LightCNN29  # Frozen: phi of the context loss, R's trunk, verification features.
    recognizer: RecognizerHead
    image_size: int
    channels: int
    num_classes: int

    @property
    def total_steps(self) -> int:
        return self.hp.total_steps

    @property
    def pre_steps(self) -> int:
        return self.hp.gan_steps


def make_hparams(config: ml_collections.ConfigDict, steps_per_epoch: int) -> EcganHParams:
    """Validate `config.ecgan` and resolve the hyper-parameters; every error names its key."""
    if config.variant not in VARIANTS:
        raise ValueError(f"variant={config.variant!r} is unknown; allowed: {', '.join(VARIANTS)}")
    ec = config.ecgan
    if ec.mask_loss not in MASK_LOSSES:
        raise ValueError(f"ecgan.mask_loss={ec.mask_loss!r} is unknown; allowed: {MASK_LOSSES}")
    gan_steps = round(float(ec.epochs) * steps_per_epoch)
    if gan_steps <= 0:
        raise ValueError(f"ecgan.epochs={ec.epochs} must give at least one step")
    recognizer_steps = round(float(ec.recognizer_epochs) * steps_per_epoch)
    if recognizer_steps <= 0:
        raise ValueError(
            f"ecgan.recognizer_epochs={ec.recognizer_epochs} must give at least one step"
        )
    check_at_least(config, "ecgan", ("lambda_cyc", "lambda_id", "lambda_context", "lambda_mask"), 0)
    return EcganHParams(
        variant=VARIANTS[config.variant],
        gan_steps=gan_steps,
        recognizer_steps=recognizer_steps,
        learning_rate=float(ec.learning_rate),
        b1=float(config.optim.b1),
        b2=float(config.optim.b2),
        decay_fraction=float(config.optim.decay_fraction),
        lambda_cyc=float(ec.lambda_cyc),
        lambda_id=float(ec.lambda_id),
        lambda_context=float(ec.lambda_context),
        lambda_mask=float(ec.lambda_mask),
        mask_loss=str(ec.mask_loss),
        recognizer_learning_rate=float(ec.recognizer_learning_rate),
    )


def check_config(config: ml_collections.ConfigDict) -> None:
    """The keys of an ECGAN run that need no data; each error names its key."""
    make_hparams(config, steps_per_epoch=1)
    m = config.model
    check_model_keys(m)
    if config.ecgan.generator not in GENERATORS:
        raise ValueError(
            f"ecgan.generator={config.ecgan.generator!r} is unknown; allowed: {GENERATORS}"
        )
    recognition.check_frozen_trunk(config, "ecgan")
    if not config.data.get("neutral_first_frames", False):
        raise ValueError(
            "method ecgan translates neutral faces: set data.neutral_first_frames=True "
            "(configs/<db>.py:ECGAN does)"
        )
    builders.check_neutral_frames(config.data)


def build(config: ml_collections.ConfigDict, steps_per_epoch: int) -> EcganModel:
    """The model of a run whose data has `steps_per_epoch` iterations per epoch."""
    check_config(config)
    hp = make_hparams(config, steps_per_epoch)
    m = config.model
    size, width, c, k = int(m.image_size), float(m.width), int(m.channels), int(m.num_classes)
    if config.ecgan.generator == "resnet":
        generator = ResnetGenerator(width, c, k)
    else:
        generator = Generator(size, width, c)
    return EcganModel(
        generator=generator,
        d_x=PatchDiscriminator(width),
        d_y=PatchDiscriminator(width, num_conditions=k),
        hp=hp,
        identity=LightCNN29(width, m.lightcnn_classes, version=config.identity.version),
        recognizer=RecognizerHead(width, k),
        image_size=size,
        channels=c,
        num_classes=k,
    )
