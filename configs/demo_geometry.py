"""Demo of method `geometry` on the built-in synthetic set rendered at 5 yaw bins (-30 to +30
degrees) at 32 px with narrow networks: the identity network, then E, G, D_att, D_i and C end to
end, then C on real and template faces, on a 2-core CPU in under 10 minutes (docs/methods.md).
samples/targets.png shows held-out faces rendered with every (pose, expression) template."""

from configs import default, demo_paper


def get_config(variant: str | None = None):
    config = demo_paper.get_config()
    config.name = "demo_geometry"
    config.data.poses = "-30,-15,0,15,30"
    config.data.num_subjects = 24
    config.train.eval_every = 0
    config.method = "geometry"  # So that BASELINE, shared by every method, is geometry's.
    config = default.with_variant(config, variant or "GEO")
    config.train.batch_size = 36  # The method's batch (KEYS_OF_METHOD), kept for every variant.
    # 220 end-to-end iterations, then 770 of C on real and template faces (one per real face,
    # against the paper's 5, so C gets the updates it needs within the demo's 10 minutes: C
    # on the real faces alone reached 26% after 330 updates, FESR's R 44% after 2750).
    config.geometry.epochs = 4.0
    config.geometry.synthetic_epochs = 14.0
    config.geometry.synthetic_per_real = 1
    config.geometry.recognizer_learning_rate = 1e-3
    if config.method == "fesr":  # `:FESR_JL` beside the variants: the same iterations.
        config.train.pre_epochs = config.geometry.epochs
        config.train.max_epochs = config.geometry.epochs + config.geometry.synthetic_epochs
    return config
