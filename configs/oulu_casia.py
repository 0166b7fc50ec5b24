"""Oulu-CASIA: 6 classes, last 3 frames per sequence, subject-independent 10-fold CV."""

from configs import default


def get_config(variant: str | None = None):
    config = default.get_config()
    config.name = "oulu_casia"
    config.data.name = "oulu_casia"
    config.data.manual_dir = "~/fergan_data/oulu_casia"
    config.data.align = "auto"  # Landmarks as in the paper; the cascade crop without them.
    config.data.label_last_frames = 3
    config.data.num_folds = 10
    config.model.num_classes = 6
    return default.with_variant(config, variant)
