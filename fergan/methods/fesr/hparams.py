"""FESR's static hyper-parameters of the training iteration, resolved and validated from the
config."""

import dataclasses

import jax
import ml_collections

from fergan.methods.fesr.variants import Variant, get_variant
from fergan.training.cpu_workarounds import gate_by_select
from fergan.training.optim import linear_decay


@dataclasses.dataclass(frozen=True)
class StepHParams:
    """Everything the jitted iteration needs besides arrays; hashable, fixed at trace time."""

    variant: Variant
    pre_steps: int  # P_pre in iterations.
    total_steps: int  # P_max in iterations.
    learning_rate: float
    b1: float
    b2: float
    decay_fraction: float
    n_critic: int
    lambda_z: float
    lambda_rec: float
    lambda_id: float
    lambda_cls: float
    lambda_adv_d: float
    lambda_intra: float
    lambda_gp: float
    lambda_pair: float = 0.0  # Paired synthesis at apex (a departure; configs/default.py).
    lambda_neutral: float = 0.0  # Paired synthesis at intensity 0, to the sequence's neutral.
    synthetic_min_intensity: float = 0.0  # Least v_y of x_pf (a departure; configs/default.py).
    gate_by_select: bool = False  # Off updates: both branches then jnp.where, not lax.cond.
    lr_offset: int = 0  # Schedule iterations before step 0 (BASELINE: the skipped P_pre).

    def learning_rate_at(self, step):
        """Constant, then linear decay to 0 over the last `decay_fraction` of training (SPEC).

        The schedule spans lr_offset + total_steps iterations and `step` counts from lr_offset,
        so BASELINE's R update s runs at the rate of FESR_JL's R update at P_pre + s.
        """
        decay_steps = max(1, round((self.total_steps + self.lr_offset) * self.decay_fraction))
        return linear_decay(self.learning_rate, step, self.total_steps, decay_steps)


def paired_weights(config: ml_collections.ConfigDict) -> tuple[float, float]:
    """(loss.lambda_pair, loss.lambda_neutral) as the step uses them: 0 for a variant without a
    generator (and for configs written before the keys existed)."""
    if not get_variant(config.variant).use_gan:
        return 0.0, 0.0
    return float(config.loss.get("lambda_pair", 0.0)), float(config.loss.get("lambda_neutral", 0.0))


def paired_features(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The batch features the paired synthesis losses read ('pair', 'own_neutral'); none for
    the paper's setting or a variant without a generator."""
    pair, neutral = paired_weights(config)
    return ("pair",) * (pair > 0) + ("own_neutral",) * (neutral > 0)


def schedule_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> tuple[int, int, int]:
    """(P_pre, P_max, lr_offset) in iterations for the configured variant.

    FESR_OneSt has no stage 1. BASELINE trains only R, for as many R updates as the joint
    variants make in stage 2 (P_max - P_pre), so the comparison is per R update; its learning
    rate schedule starts P_pre iterations in (lr_offset), so each of those updates also has
    the rate of the matching stage-2 update.
    """
    variant = get_variant(config.variant)
    pre = round(config.train.pre_epochs * steps_per_epoch)
    total = round(config.train.max_epochs * steps_per_epoch)
    if not 0 <= pre <= total or total <= 0:
        raise ValueError(
            f"train.pre_epochs={config.train.pre_epochs} and train.max_epochs="
            f"{config.train.max_epochs} must satisfy 0 <= pre_epochs <= max_epochs, max_epochs > 0"
        )
    if not variant.use_gan:
        return 0, total - pre, pre
    if not variant.pretrain:
        return 0, total, 0
    return pre, total, 0


def make_hparams(config: ml_collections.ConfigDict, steps_per_epoch: int) -> StepHParams:
    """Validate the config and resolve the static hyper-parameters of the iteration."""
    variant = get_variant(config.variant)
    if config.train.n_critic < 1:
        raise ValueError(f"train.n_critic={config.train.n_critic} must be >= 1")
    if not 0.0 <= config.optim.decay_fraction <= 1.0:
        raise ValueError(f"optim.decay_fraction={config.optim.decay_fraction} must be in [0, 1]")
    pre, total, lr_offset = schedule_steps(config, steps_per_epoch)
    loss = config.loss
    pair, neutral = paired_weights(config)
    for key in ("lambda_pair", "lambda_neutral"):
        if loss.get(key, 0.0) < 0:
            raise ValueError(f"loss.{key}={loss.get(key)} must be >= 0")
    min_intensity = float(config.recognizer.get("synthetic_min_intensity", 0.0))
    if not 0.0 <= min_intensity < 1.0:
        raise ValueError(f"recognizer.synthetic_min_intensity={min_intensity} must be in [0, 1)")
    if loss.get("lambda_neutral", 0.0) > 0 and not config.data.neutral_first_frames:
        raise ValueError(
            f"loss.lambda_neutral={loss.lambda_neutral} needs data.neutral_first_frames=True "
            "(its targets are the sequences' neutral first frames)"
        )
    return StepHParams(
        variant=variant,
        pre_steps=pre,
        total_steps=total,
        learning_rate=config.optim.learning_rate,
        b1=config.optim.b1,
        b2=config.optim.b2,
        decay_fraction=config.optim.decay_fraction,
        n_critic=config.train.n_critic,
        lambda_z=loss.lambda_z,
        lambda_rec=loss.lambda_rec,
        lambda_id=loss.lambda_id,
        lambda_cls=loss.lambda_cls,
        lambda_adv_d=loss.lambda_adv_d,
        lambda_intra=loss.lambda_intra,
        lambda_gp=loss.lambda_gp,
        lambda_pair=pair,
        lambda_neutral=neutral,
        synthetic_min_intensity=min_intensity,
        gate_by_select=gate_by_select(config.train.get("gating", "auto"), jax.default_backend()),
        lr_offset=lr_offset,
    )
