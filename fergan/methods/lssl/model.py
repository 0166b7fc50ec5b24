"""LSSL's variants, static hyper-parameters and built model (networks + hyper-parameters).

Papers: A = attribute-guided synthesis (the networks, L_adv, L_cls, L_id, L_bi), B = LSSL (A plus
the face-parsing loss L_p). Values are A's and B's (Sec. IV of both): Adam 1e-4 (0.5, 0.999),
5 D updates per G update, batch 8, lambda_gp 10, lambda_cls 1, lambda_id 10, lambda_bi 10,
lambda_p 10; the rate decays linearly to 0 over the second half of training.

A run has two stages. Stage 1 (`lssl.epochs`) trains G and D. Stage 2 trains the recognizer on
the real training faces and on a seeded pool of `lssl.synthetic_per_class` x K synthetic faces
made by the frozen G: each stage-2 iteration takes B real faces and renders each with its
batch's target class y_target (drawn uniformly from the other classes, per sample, from the
seed), so the pool is generated as it is used and never stored; ceil(P K / B) iterations show
each pool face once, beside B real faces. BASELINE runs stage 2 alone on the real faces.
"""

import dataclasses
import math

import flax.linen as nn
import ml_collections

from fergan.methods.lssl.losses import CLS_LOSSES
from fergan.methods.lssl.networks import LsslDiscriminator, LsslGenerator
from fergan.methods.lssl.parser import parser_module
from fergan.models import LightCNN29, RecognizerHead
from fergan.models.layers import check_model_keys
from fergan.training import recognition
from fergan.training.optim import linear_decay

ID_LABELS = ("target", "source")
# 'r': fergan's R (RecognizerHead on the frozen LightCNN-29 trunk); 'discriminator': the paper's
# D-shaped classifier (A's Table II trunk and classification head), trained from scratch.
RECOGNIZERS = ("r", "discriminator")


@dataclasses.dataclass(frozen=True)
class LsslVariant:
    """Switches of one variant; the defaults are the full method (paper B)."""

    side: bool = True  # The landmark heatmap s beside x, in G and in D.
    bidirectional: bool = True  # L_bi (A Eq. 5, B Eq. 6).
    parsing: bool = True  # L_p (B Eq. 5).
    gan: bool = True  # Stage 1 (G and D); False: the recognizer on real faces only.


VARIANTS = {
    "LSSL": LsslVariant(),
    "LSSL-P": LsslVariant(parsing=False),  # Paper A.
    "LSSL-BI": LsslVariant(bidirectional=False),
    "LSSL-S": LsslVariant(side=False),
    # The same recognizer and stage-2 schedule without synthetic faces.
    "BASELINE": LsslVariant(side=False, bidirectional=False, parsing=False, gan=False),
}


@dataclasses.dataclass(frozen=True)
class LsslHParams:
    """Everything the jitted iteration needs besides arrays; hashable."""

    variant: LsslVariant
    gan_steps: int  # Stage 1 (0 for BASELINE).
    recognizer_steps: int  # Stage 2.
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
    recognizer_learning_rate: float = 1e-4

    @property
    def total_steps(self) -> int:
        return self.gan_steps + self.recognizer_steps

    def _decayed(self, rate: float, step, end: int, length: int):
        """`rate`, then linear decay to 0 over the last `decay_fraction` of a stage of `length`
        iterations ending at `end`."""
        return linear_decay(rate, step, end, max(1, round(length * self.decay_fraction)))

    def learning_rate_at(self, step):
        """G's and D's rate in stage 1 (A Sec. IV: linear decay over the second half)."""
        return self._decayed(self.learning_rate, step, self.gan_steps, self.gan_steps)

    def recognizer_rate_at(self, step):
        """The recognizer's rate in stage 2, decayed the same way over its stage."""
        rate, end = self.recognizer_learning_rate, self.total_steps
        return self._decayed(rate, step, end, self.recognizer_steps)


@dataclasses.dataclass(frozen=True)
class LsslModel:
    """Hashable (no arrays): jitted functions take it as a static argument. `parser` is the
    frozen face-parsing network (None when the variant has no L_p)."""

    generator: LsslGenerator
    discriminator: LsslDiscriminator
    parser: nn.Module | None
    hp: LsslHParams
    identity: LightCNN29  # Frozen: R's trunk (recognizer 'r') and the verification features.
    recognizer: nn.Module  # RecognizerHead ('r') or an LsslDiscriminator ('discriminator').
    parser_weights: str = ""  # The pretrained parser's Orbax folder (variants with L_p).

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
        return self.hp.gan_steps


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
    variant = VARIANTS[config.variant]
    gan_steps = round(float(lssl.epochs) * steps_per_epoch) if variant.gan else 0
    if variant.gan and gan_steps <= 0:
        raise ValueError(f"lssl.epochs={lssl.epochs} must give at least one step")
    if int(lssl.synthetic_per_class) < 1:
        raise ValueError(f"lssl.synthetic_per_class={lssl.synthetic_per_class} must be >= 1")
    pool = int(lssl.synthetic_per_class) * int(config.model.num_classes)
    return LsslHParams(
        variant=variant,
        gan_steps=gan_steps,
        recognizer_steps=math.ceil(pool / int(config.train.batch_size)),
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
        recognizer_learning_rate=float(lssl.recognizer_learning_rate),
    )


def check_networks(config: ml_collections.ConfigDict) -> None:
    """The network keys of an LSSL run (parser aside); each error names its key."""
    m, lssl = config.model, config.lssl
    check_model_keys(m)
    if lssl.recognizer not in RECOGNIZERS:
        raise ValueError(f"lssl.recognizer={lssl.recognizer!r} is unknown; allowed: {RECOGNIZERS}")
    recognition.check_frozen_trunk(config, "lssl")


def build(config: ml_collections.ConfigDict, steps_per_epoch: int) -> LsslModel:
    """The model of a run whose data has `steps_per_epoch` iterations per epoch; each error
    names its key. The parser comes from `lssl.parser_weights` (set by `prepare`)."""
    hp = make_hparams(config, steps_per_epoch)
    check_networks(config)
    m, lssl = config.model, config.lssl
    size, width, k = int(m.image_size), float(m.width), int(m.num_classes)
    parser = None
    if hp.variant.parsing:
        if not lssl.parser_weights:
            raise ValueError("lssl.parser_weights is empty: the parsing loss needs a face parser")
        parser = parser_module(lssl.parser_weights)
    recognizer = (
        RecognizerHead(width, k) if lssl.recognizer == "r" else LsslDiscriminator(size, width, k)
    )
    return LsslModel(
        generator=LsslGenerator(size, width, m.channels, k, side=hp.variant.side),
        discriminator=LsslDiscriminator(size, width, k),
        parser=parser,
        hp=hp,
        identity=LightCNN29(width, m.lightcnn_classes, version=config.identity.version),
        recognizer=recognizer,
        parser_weights=str(lssl.parser_weights) if parser is not None else "",
    )
