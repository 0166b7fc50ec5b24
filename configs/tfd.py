"""TFD: 7 classes; its 5 official folds are not reproduced by subject folds (docs/data.md).

No release layout of this database could be checked, so it is read through the generic
`expression_folder` builder: export it as `<manual_dir>/<class>/S<subject>_<...>.png`
(docs/data.md).
"""

from configs import default, image_folder


def get_config(variant: str | None = None):
    config = image_folder.get_config()
    config.name = "tfd"
    config.data.manual_dir = "~/fergan_data/tfd"
    config.data.class_names = "anger,disgust,fear,happiness,neutral,sadness,surprise"
    config.data.num_folds = 5
    config.model.num_classes = 7
    return default.with_variant(config, variant)
