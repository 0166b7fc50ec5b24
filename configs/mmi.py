"""MMI: 6 classes, three hand-picked peak frames per sequence, subject-independent 10-fold CV.

No release layout of this database could be checked, so it is read through the generic
`expression_folder` builder: export it as `<manual_dir>/<class>/S<subject>_<...>.png`
(docs/data.md).
"""

from configs import default, image_folder


def get_config(variant: str | None = None):
    config = image_folder.get_config()
    config.name = "mmi"
    config.data.manual_dir = "~/fergan_data/mmi"
    config.data.class_names = "anger,disgust,fear,happiness,sadness,surprise"
    config.data.num_folds = 10
    config.model.num_classes = 6
    return default.with_variant(config, variant)
