"""The built-in procedural face set (no download), at the paper's size 128."""

from configs import default


def get_config(variant: str | None = None):
    config = default.get_config()
    config.name = "synthetic_faces"
    config.data.name = "synthetic_faces"
    config.data.num_subjects = 60
    config.model.num_classes = 7
    return default.with_variant(config, variant)
