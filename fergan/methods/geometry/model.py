"""Geometry's variants, static hyper-parameters and built model (paper
geometry_guided_pose_invariant_fer; the decisions where it is silent are in docs/methods.md).

A run has two stages. Stage 1 (`geometry.epochs`) trains everything end to end (Eq. 10): per
iteration one update of D_att and D_i, one joint update of G (G_enc, G_dec) and E, and one of the
classifier C on the real faces and the rendered faces x' (Eq. 5). Stage 2
(`geometry.synthetic_epochs`) freezes G and E and trains C on the real faces plus
`geometry.synthetic_per_real` faces per real one, each the real face rendered with a template of
the bank (`templates.py`) and labelled with the template's expression (Sec. III-C, Fig. 5).
Adam (optim.b1, optim.b2) at `geometry.learning_rate`, constant, for every network.
BASELINE trains C alone on the real faces for the same iterations, the other networks untouched.
"""

import dataclasses

import ml_collections

from fergan.config_utils import check_at_least
from fergan.methods.geometry import networks
from fergan.methods.geometry.templates import TemplateBank, random_templates, select_templates
from fergan.models import LightCNN29, RecognizerHead
from fergan.models.layers import check_model_keys
from fergan.training import recognition

CON_TARGETS = ("input", "same_subject")
CLASSIFIERS = ("r", "resnet50")


@dataclasses.dataclass(frozen=True)
class GeometryVariant:
    """Switches of one variant; the defaults are the full method (Table VIII's rows)."""

    synthetic: bool = True  # Stage 2 adds template renders to C's data (No_SynFI: real only).
    smoothing: bool = True  # Label smoothing on rendered faces (No_LS: rho = 0).
    end_to_end: bool = True  # C's loss trains G and C learns in stage 1 (No_E2E: neither).
    synthesis: bool = True  # Train E, G, D_att, D_i at all (BASELINE: C on real faces only).


VARIANTS = {
    "GEO": GeometryVariant(),
    "GEO-No_SynFI": GeometryVariant(synthetic=False),
    "GEO-No_LS": GeometryVariant(smoothing=False),
    "GEO-No_E2E": GeometryVariant(end_to_end=False),
    "BASELINE": GeometryVariant(synthetic=False, synthesis=False),
}


@dataclasses.dataclass(frozen=True)
class GeometryHParams:
    """Everything the jitted iteration needs besides arrays; hashable. Weights as in Eq. 10."""

    variant: GeometryVariant
    synthesis_steps: int  # Stage 1.
    synthetic_steps: int  # Stage 2.
    learning_rate: float = 5e-4
    b1: float = 0.5
    b2: float = 0.999
    lambda_att: float = 1e-3  # lambda_1, D_att's adversarial term (Eq. 3).
    lambda_i: float = 1e-3  # lambda_2, D_i's adversarial term (Eq. 4).
    lambda_cls: float = 1e-3  # lambda_3, C's loss on x' (Eq. 5).
    lambda_con: float = 1.0  # L_con (Eq. 7).
    lambda_gr: float = 1e-4  # lambda_4, L_gr (Eq. 9).
    lambda_tv: float = 1e-4  # lambda_5, L_tv (Eq. 8).
    rho: float = 0.1  # Eq. 6.
    con_target: str = "input"
    synthetic_per_real: int = 5
    landmark_noise: float = 0.0  # Table IX: template landmarks +- this many pixels at 224 px.
    recognizer_learning_rate: float = 5e-4

    @property
    def total_steps(self) -> int:
        return self.synthesis_steps + self.synthetic_steps

    @property
    def smoothing(self) -> float:
        """rho of Eq. 6 for this variant (0 for No_LS)."""
        return self.rho if self.variant.smoothing else 0.0


@dataclasses.dataclass(frozen=True)
class GeometryModel:
    """Hashable (no arrays): jitted functions take it as a static argument."""

    embedding: networks.GeometryEmbedding
    encoder: networks.Encoder
    decoder: networks.Decoder
    d_att: networks.AttributeDiscriminator
    d_i: networks.IdentityDiscriminator
    hp: GeometryHParams
    identity: LightCNN29  # Frozen: C's trunk and the verification features.
    # C: fergan's R on the frozen trunk (`geometry.classifier=r`) or the paper's ResNet-50.
    recognizer: RecognizerHead | networks.ResNet50Classifier
    templates: TemplateBank  # The synthetic stage's target geometries (`attach_data`).
    image_size: int
    channels: int
    num_classes: int

    @property
    def total_steps(self) -> int:
        return self.hp.total_steps

    @property
    def pre_steps(self) -> int:
        return self.hp.synthesis_steps


def make_hparams(config: ml_collections.ConfigDict, steps_per_epoch: int | None) -> GeometryHParams:
    """Validate `config.geometry` and resolve the hyper-parameters; every error names its key.
    `steps_per_epoch` None: before the data is known (the stage lengths are not checked)."""
    if config.variant not in VARIANTS:
        raise ValueError(f"variant={config.variant!r} is unknown; allowed: {', '.join(VARIANTS)}")
    geo = config.geometry
    if geo.con_target not in CON_TARGETS:
        raise ValueError(
            f"geometry.con_target={geo.con_target!r} is unknown; allowed: {CON_TARGETS}"
        )
    if float(geo.epochs) <= 0:
        raise ValueError(f"geometry.epochs={geo.epochs} must be > 0")
    synthesis_steps = round(float(geo.epochs) * (steps_per_epoch or 1))
    if steps_per_epoch and synthesis_steps == 0:
        raise ValueError(
            f"geometry.epochs={geo.epochs} gives no step at {steps_per_epoch} steps per epoch"
        )
    synthetic_steps = round(float(geo.synthetic_epochs) * (steps_per_epoch or 1))
    weights = ("lambda_att", "lambda_i", "lambda_cls", "lambda_con", "lambda_gr", "lambda_tv")
    rates = ("learning_rate", "recognizer_learning_rate")
    check_at_least(config, "geometry", (*weights, *rates, "synthetic_epochs", "landmark_noise"), 0)
    check_at_least(config, "geometry", ("synthetic_per_real", "templates"), 1)
    if not 0.0 <= float(geo.rho) < 1.0:
        raise ValueError(f"geometry.rho={geo.rho} must be in [0, 1)")
    return GeometryHParams(
        variant=VARIANTS[config.variant],
        synthesis_steps=synthesis_steps,
        synthetic_steps=synthetic_steps,
        learning_rate=float(geo.learning_rate),
        b1=float(config.optim.b1),
        b2=float(config.optim.b2),
        **{key: float(geo[key]) for key in weights},
        rho=float(geo.rho),
        con_target=str(geo.con_target),
        synthetic_per_real=int(geo.synthetic_per_real),
        landmark_noise=float(geo.landmark_noise),
        recognizer_learning_rate=float(geo.recognizer_learning_rate),
    )


def check_config(config: ml_collections.ConfigDict) -> None:
    """The keys of a geometry run that need no data; each error names its key."""
    make_hparams(config, steps_per_epoch=None)
    check_model_keys(config.model)
    networks.check_image_size(int(config.model.image_size))
    recognition.check_frozen_trunk(config, "geometry")
    if config.geometry.classifier not in CLASSIFIERS:
        raise ValueError(
            f"geometry.classifier={config.geometry.classifier!r} is unknown; allowed: {CLASSIFIERS}"
        )


def build(config: ml_collections.ConfigDict, steps_per_epoch: int) -> GeometryModel:
    """The model of a run whose data has `steps_per_epoch` iterations per epoch. Its template
    bank is random until `attach_data` draws it from the training faces."""
    check_config(config)
    m = config.model
    size, width, c, k = int(m.image_size), float(m.width), int(m.channels), int(m.num_classes)
    return GeometryModel(
        embedding=networks.GeometryEmbedding(),
        encoder=networks.Encoder(width),
        decoder=networks.Decoder(size, c, width),
        d_att=networks.AttributeDiscriminator(width),
        d_i=networks.IdentityDiscriminator(),
        hp=make_hparams(config, steps_per_epoch),
        identity=LightCNN29(width, m.lightcnn_classes, version=config.identity.version),
        recognizer=(
            RecognizerHead(width, k)
            if config.geometry.classifier == "r"
            else networks.ResNet50Classifier(k, width)
        ),
        templates=random_templates(int(config.geometry.templates), k, int(config.seed)),
        image_size=size,
        channels=c,
        num_classes=k,
    )


def attach_data(model: GeometryModel, config: ml_collections.ConfigDict, datasets) -> GeometryModel:
    """`model` with its template bank drawn from the fold's training frames (`datasets.train`).
    ValueError, before any training, when a class has no template: the editor renders every
    class from its template."""
    count = int(config.geometry.templates)
    bank = select_templates(datasets.train, count, int(config.seed))
    missing = sorted(set(range(model.num_classes)) - set(bank.labels))
    if missing:
        names = ", ".join(datasets.class_names[k] for k in missing)
        raise ValueError(
            f"geometry.templates={count}: no template of class {names} (the fold's training "
            f"frames cover {len(set(datasets.train.labels.tolist()))} of {model.num_classes} "
            "classes); every class needs one"
        )
    return dataclasses.replace(model, templates=bank)
