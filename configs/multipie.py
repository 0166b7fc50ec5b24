"""Multi-PIE: 6 expressions (NE, DI, SU, SM, SC, SQ) at 5 yaw angles (-30 to +30 degrees),
subject-independent 5-fold CV; accuracy per pose beside the mean (docs/data.md "multipie")."""

from configs import default


def get_config(variant: str | None = None):
    config = default.get_config()
    config.name = "multipie"
    config.data.name = "multipie"
    config.data.manual_dir = "~/fergan_data/multipie"
    config.data.align = "auto"  # Landmarks as in the papers; the cascade crop without them.
    config.data.num_folds = 5
    config.model.num_classes = 6
    return default.with_variant(config, variant)
