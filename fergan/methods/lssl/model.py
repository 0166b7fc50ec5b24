"""LSSL's variants, static hyper-parameters and built model (networks + hyper-parameters).

Papers: A = attribute-guided synthesis (the networks, L_adv, L_cls, L_id, L_bi), B = LSSL (A plus
the face-parsing loss L_p). Values are A's and B's (Sec. IV of both): Adam 1e-4 (0.5, 0.999),
5 D updates per G update, batch 8, lambda_gp 10, lambda_cls 1, lambda_id 10, lambda_bi 10,
lambda_p 10; the rate decays linearly to 0 over the second half of training.
"""

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from fergan.methods.lssl.losses import CLS_LOSSES
from fergan.methods.lssl.networks import LsslDiscriminator, LsslGenerator

ID_LABELS = ("target", "source")


@dataclasses.dataclass(frozen=True)
class LsslVariant:
    """Switches of one variant; the defaults are the full method (paper B)."""

    side: bool = True  # The landmark heatmap s beside x, in G and in D.
    bidirectional: bool = True  # L_bi (A Eq. 5, B Eq. 6).
    parsing: bool = True  # L_p (B Eq. 5).


VARIANTS = {
    "LSSL": LsslVariant(),
    "LSSL-P": LsslVariant(parsing=False),  # Paper A.
    "LSSL-BI": LsslVariant(bidirectional=False),
    "LSSL-S": LsslVariant(side=False),
}


@dataclasses.dataclass(frozen=True)
class LsslHParams:
    """Everything the jitted iteration needs besides arrays; hashable."""

    variant: LsslVariant
    total_steps: int
    learning_rate: float = 1e-4
    b1: float = 0.5
    b2: float = 0.999
    decay_fraction: float = 0.5  # Linear decay to 0 over this last fraction ("after 100 epochs").
    n_critic: int = 5
    lambda_gp: float = 10.0
    lambda_cls: float = 1.0
    lambda_id: float = 10.0
    lambda_bi: float = 10.0
    lambda_p: float = 10.0
    cls_loss: str = "softmax"
    id_label: str = "target"

    def learning_rate_at(self, step):
        """Constant, then linear decay to 0 over the last `decay_fraction` of the iterations."""
        decay_steps = max(1, round(self.total_steps * self.decay_fraction))
        remaining = (self.total_steps - step).astype(jnp.float32)
        return self.learning_rate * jnp.clip(remaining / decay_steps, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class LsslModel:
    """Hashable (no arrays): jitted functions take it as a static argument. `parser` is the
    frozen face-parsing network (None when the variant has no L_p)."""

    generator: LsslGenerator
    discriminator: LsslDiscriminator
    parser: nn.Module | None
    hp: LsslHParams

    @property
    def image_size(self) -> int:
        return self.generator.image_size

    @property
    def channels(self) -> int:
        return self.generator.channels

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes

    @property
    def total_steps(self) -> int:
        return self.hp.total_steps

    @property
    def pre_steps(self) -> int:
        return 0


def make_hparams(config: ml_collections.ConfigDict, steps_per_epoch: int) -> LsslHParams:
    """Validate `config.lssl` / `config.optim` / `config.train` and resolve the hyper-parameters;
    every error names its key."""
    if config.variant not in VARIANTS:
        raise ValueError(f"variant={config.variant!r} is unknown; allowed: {', '.join(VARIANTS)}")
    lssl = config.lssl
    if lssl.cls_loss not in CLS_LOSSES:
        raise ValueError(f"lssl.cls_loss={lssl.cls_loss!r} is unknown; allowed: {CLS_LOSSES}")
    if lssl.id_label not in ID_LABELS:
        raise ValueError(f"lssl.id_label={lssl.id_label!r} is unknown; allowed: {ID_LABELS}")
    if int(lssl.n_critic) < 1:
        raise ValueError(f"lssl.n_critic={lssl.n_critic} must be >= 1")
    total = round(float(lssl.epochs) * steps_per_epoch)
    if total <= 0:
        raise ValueError(f"lssl.epochs={lssl.epochs} must give at least one step")
    return LsslHParams(
        variant=VARIANTS[config.variant],
        total_steps=total,
        learning_rate=float(config.optim.learning_rate),
        b1=float(config.optim.b1),
        b2=float(config.optim.b2),
        decay_fraction=float(config.optim.decay_fraction),
        n_critic=int(lssl.n_critic),
        lambda_gp=float(lssl.lambda_gp),
        lambda_cls=float(lssl.lambda_cls),
        lambda_id=float(lssl.lambda_id),
        lambda_bi=float(lssl.lambda_bi),
        lambda_p=float(lssl.lambda_p),
        cls_loss=str(lssl.cls_loss),
        id_label=str(lssl.id_label),
    )


def build_networks(
    image_size: int, width: float, channels: int, num_classes: int, variant: LsslVariant, parser
) -> tuple[LsslGenerator, LsslDiscriminator, nn.Module | None]:
    """G, D and (for L_p) the frozen parser of one variant."""
    generator = LsslGenerator(image_size, width, channels, num_classes, side=variant.side)
    discriminator = LsslDiscriminator(image_size, width, num_classes)
    return generator, discriminator, parser if variant.parsing else None
