"""Multi-PIE: 6 expressions x 5 poses, subject-independent 5-fold CV.

No release layout of this database could be checked, so it is read through the generic
`expression_folder` builder: export it as `<manual_dir>/<class>/S<subject>_<...>.png`
(docs/data.md).
"""

from configs import default, image_folder


def get_config(variant: str | None = None):
    config = image_folder.get_config()
    config.name = "multipie"
    config.data.manual_dir = "~/fergan_data/multipie"
    config.data.class_names = "disgust,neutral,scream,smile,squint,surprise"
    config.data.num_folds = 5
    config.model.num_classes = 6
    return default.with_variant(config, variant)
