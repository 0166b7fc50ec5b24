"""Any database exported as `<root>/<class_name>/<file>` with the subject id in the file name."""

from configs import default


def get_config(variant: str | None = None):
    config = default.get_config()
    config.name = "image_folder"
    config.data.name = "expression_folder"
    config.data.manual_dir = "~/fergan_data/image_folder"
    config.data.class_names = ""  # "" = sorted folder names.
    config.data.subject_regex = r"^S(\d+)_"
    config.data.sequence_regex = ""
    config.data.align = "auto"  # Landmarks as in the paper; the cascade crop without them.
    config.data.num_folds = 10
    config.model.num_classes = 7
    return default.with_variant(config, variant)
