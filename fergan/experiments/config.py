"""A run's config, resolved once before the run starts and then frozen."""

import ml_collections

from fergan import methods
from fergan.config_utils import editable_copy, frozen
from fergan.identity import ensure_weights


def resolve_config(
    config: ml_collections.ConfigDict, workdir: str, mode: str
) -> ml_collections.FrozenConfigDict:
    """The run's config, resolved once and frozen: references resolved and, for a mode that
    trains or renders with `identity.pretrain` (and a method with an identity network),
    `identity.weights` set to the pretrained network (trained first when
    `<workdir>/identity_weights` is missing); for a mode that builds a model, the method's own
    pretrained files (`Method.prepare`)."""
    config = editable_copy(config)
    method = methods.of(config)
    pretrain = config.identity.pretrain and method.has_identity_network
    if mode in ("train", "synthesize") and pretrain and not config.identity.weights:
        config.identity.weights = ensure_weights(config, workdir)
    if mode in ("train", "synthesize", "evaluate") and method.prepare:
        method.prepare(config, workdir)
    return frozen(config)
