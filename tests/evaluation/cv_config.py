"""The tiny 2-fold cross-validation config of test_cross_validate (also a --config file)."""

from tests.program.helpers import tiny_config


def get_config():
    config = tiny_config("FESR_JL")
    config.data.num_subjects = 4  # 2 test subjects per fold: verification has both pair kinds.
    config.data.num_folds = 2
    # 2 training subjects x 21 frames: 5 steps per epoch. The sizes of the program tests' tiny
    # runs, so the folds train with the steps those runs compile.
    config.train.batch_size = 8
    return config
