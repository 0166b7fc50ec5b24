"""A tiny training config for program tests (32 px, narrow networks, 4 synthetic subjects)."""

from configs import demo


def tiny_config(variant: str = "FESR_JL", data_dir: str = ""):
    config = demo.get_config(variant)
    config.model.width = 0.125
    config.data.num_subjects = 4
    config.data.num_folds = 2
    config.data.data_dir = data_dir
    config.train.batch_size = 8
    config.train.pre_epochs = 1
    config.train.max_epochs = 2  # 5 steps per epoch: 10 steps, 5 in each stage.
    config.train.log_every = 2
    config.train.eval_every = 0
    config.train.checkpoint_every = 4
    config.identity.pretrain = False
    config.judge.kind = "none"  # The judge's own test trains one (tests/program/test_judge_eval).
    return config
