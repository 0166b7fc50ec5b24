"""The identity network's weights: converted from PyTorch, pretrained here, and verified."""

from fergan.identity.verification import rank1_accuracy, verification_auc
from fergan.identity.weights import (
    identity_params_for,
    load_identity_params,
    read_identity_metadata,
    save_identity_params,
)

__all__ = [
    "identity_params_for",
    "load_identity_params",
    "rank1_accuracy",
    "read_identity_metadata",
    "save_identity_params",
    "verification_auc",
]
