"""FESR's built model: the networks and the static hyper-parameters of one run."""

import dataclasses

import ml_collections

from fergan.methods.fesr.hparams import StepHParams, make_hparams
from fergan.methods.fesr.networks import Networks, build_networks
from fergan.methods.fesr.variants import get_variant


@dataclasses.dataclass(frozen=True)
class FesrModel:
    """Hashable (no arrays): jitted functions take it as a static argument."""

    nets: Networks
    hp: StepHParams

    @property
    def image_size(self) -> int:
        return self.nets.image_size

    @property
    def channels(self) -> int:
        return self.nets.channels

    @property
    def num_classes(self) -> int:
        return self.nets.num_classes

    @property
    def total_steps(self) -> int:
        return self.hp.total_steps

    @property
    def pre_steps(self) -> int:
        return self.hp.pre_steps


def networks_of(config: ml_collections.ConfigDict) -> Networks:
    """The networks `config` describes (validated, each error naming its key)."""
    return build_networks(
        config.model,
        get_variant(config.variant).use_dimg_cls,
        config.identity.version,
        config.recognizer.trunk,
    )


def build(config: ml_collections.ConfigDict, steps_per_epoch: int) -> FesrModel:
    """The model of a run whose data has `steps_per_epoch` iterations per epoch."""
    return FesrModel(nets=networks_of(config), hp=make_hparams(config, steps_per_epoch))


def check_config(config: ml_collections.ConfigDict) -> None:
    """FESR's keys that can be checked before the data exists (networks, schedule, losses)."""
    networks_of(config)
    make_hparams(config, steps_per_epoch=1)
