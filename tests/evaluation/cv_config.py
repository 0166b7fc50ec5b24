"""The tiny 3-fold cross-validation config of test_cross_validate (also a --config file)."""

from tests.program.helpers import tiny_config


def get_config():
    config = tiny_config("FESR_JL")
    config.data.num_subjects = 6  # 2 test subjects per fold: verification has both pair kinds.
    config.data.num_folds = 3
    config.train.batch_size = 16  # 4 training subjects x 21 frames: 5 steps per epoch.
    return config
