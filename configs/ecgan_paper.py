"""ECGAN as its paper trains it (Sec. 4 "Setup"): batch 1, Adam 2e-4 with beta1 0.5, 200 epochs,
at 128 px on the built-in synthetic set; point `data.*` at another database to train on it
(`--config.data.name=ck_plus --config.data.manual_dir=...`). A GPU job (docs/results.md)."""

from configs import default, synthetic_faces


def get_config(variant: str | None = None):
    config = synthetic_faces.get_config()
    config.name = "ecgan_paper"
    config.train.batch_size = 1  # The paper's; the other configs share train.batch_size.
    config.train.num_devices = 1  # One face per step: one device.
    config.ecgan.epochs = 200.0
    config.ecgan.learning_rate = 2e-4
    config.optim.b1 = 0.5
    return default.with_variant(config, variant or "ECGAN")
