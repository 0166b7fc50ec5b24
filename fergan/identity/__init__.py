"""The identity network's weights: converted from PyTorch, pretrained here, and verified."""

from fergan.identity.ensure import ensure_weights
from fergan.identity.features import identity_features
from fergan.identity.network import identity_network
from fergan.identity.verification import rank1_accuracy, verification_auc
from fergan.identity.weights import (
    identity_params_for,
    load_identity_params,
    read_identity_metadata,
    save_identity_params,
)

__all__ = [
    "ensure_weights",
    "identity_features",
    "identity_network",
    "identity_params_for",
    "load_identity_params",
    "rank1_accuracy",
    "read_identity_metadata",
    "save_identity_params",
    "verification_auc",
]
