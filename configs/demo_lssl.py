"""Demo of method `lssl` on the built-in synthetic set at 32 px with narrow networks: the face
parser of L_p, then G and D, then the recognizer on real plus synthetic faces, all on a 2-core
CPU in under 10 minutes (docs/methods.md). BASELINE: `configs/demo_lssl.py:BASELINE`."""

from configs import default, demo_paper


def get_config(variant: str | None = None):
    config = demo_paper.get_config()
    config.name = "demo_lssl"
    config.method = "lssl"
    config.variant = "LSSL"
    config.train.batch_size = 16
    config.train.eval_every = 0
    config.lssl.epochs = 6.0
    # 2 D updates per G update instead of the paper's 5: the demo's time budget.
    config.lssl.n_critic = 2
    # The pool (1500 x 7 faces, one per real face) also sets stage 2's length: 657 iterations,
    # which the recognizer on the frozen trunk needs to leave chance.
    config.lssl.synthetic_per_class = 1500
    config.lssl.recognizer_learning_rate = 5e-4
    config.optim.learning_rate = 2e-4
    config.parser = {"width": 8, "steps": 200, "train_subjects": 60, "test_subjects": 20}
    return default.with_variant(config, variant)
