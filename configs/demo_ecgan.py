"""Demo of method `ecgan` on the built-in synthetic set at 32 px with narrow networks: the
identity network, then G_XY, G_YX, D_X and D_Y on neutral and expressive faces, then the two
recognizers (real, real + generated), on a 2-core CPU in under 10 minutes (docs/methods.md)."""

from configs import default, demo_paper


def get_config(variant: str | None = None):
    config = demo_paper.get_config()
    config.name = "demo_ecgan"
    config.train.eval_every = 0
    config.ecgan.epochs = 16.0  # 672 iterations of the generators and discriminators.
    # 1680 iterations of the two recognizers (37 ms each here). R on the frozen trunk leaves
    # chance only slowly: at 5e-4 and above its ReLU features died in the demo (loss flat at
    # ln 7, constant logits); 1e-4 and 3e-4 both learn (docs/results.md).
    config.ecgan.recognizer_epochs = 40.0
    config.ecgan.recognizer_learning_rate = 3e-4
    return default.with_variant(config, variant or "ECGAN")
