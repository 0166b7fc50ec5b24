"""CK+: 7 classes, last 3 frames of each labelled sequence for training, peak frame for testing,
subject-independent 10-fold cross-validation (SPEC "Data and protocols")."""

from configs import default


def get_config(variant: str | None = None):
    config = default.get_config()
    config.name = "ck_plus"
    config.data.name = "ck_plus"
    config.data.manual_dir = "~/fergan_data/ck_plus"  # Holds cohn-kanade-images/ and Emotion/.
    config.data.align = "auto"  # Landmarks as in the paper; the cascade crop without them.
    config.data.label_last_frames = 3
    config.data.num_folds = 10
    config.model.num_classes = 7
    return default.with_variant(config, variant)
