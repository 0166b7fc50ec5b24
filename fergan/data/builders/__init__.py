"""TFDS builders for fergan's face databases, and their construction from a config.

Importing this package registers the builders with TFDS (`synthetic_faces`, `ck_plus`,
`oulu_casia`, `expression_folder`), so `tfds.builder` / `tfds.data_source` find them by name.
"""

from __future__ import annotations

import os

import ml_collections
import tensorflow_datasets as tfds

from fergan.data import align, synthetic
from fergan.data.builders import base, ck_plus, image_folder, oulu_casia
from fergan.data.builders.base import SPLIT, FaceConfig, make_config
from fergan.data.builders.ck_plus import CkPlus
from fergan.data.builders.image_folder import ExpressionFolder
from fergan.data.builders.oulu_casia import OuluCasia
from fergan.data.builders.synthetic_faces import SyntheticFaces

BUILDERS = {
    "synthetic_faces": SyntheticFaces,
    "ck_plus": CkPlus,
    "oulu_casia": OuluCasia,
    "expression_folder": ExpressionFolder,
}

__all__ = [
    "BUILDERS",
    "SPLIT",
    "CkPlus",
    "ExpressionFolder",
    "FaceConfig",
    "OuluCasia",
    "SyntheticFaces",
    "builder_config",
    "make_builder",
    "prepare",
]


def _class_names(data: ml_collections.ConfigDict) -> tuple[str, ...]:
    listed = tuple(n.strip() for n in data.get("class_names", "").split(",") if n.strip())
    if data.name == "synthetic_faces":
        return synthetic.EXPRESSIONS
    if data.name == "ck_plus":
        return ck_plus.CLASS_NAMES
    if data.name == "oulu_casia":
        return oulu_casia.CLASS_NAMES
    return listed or image_folder.folder_class_names(_manual_dir(data))


def _manual_dir(data: ml_collections.ConfigDict) -> str:
    if not data.manual_dir:
        layout = BUILDERS[data.name].LAYOUT if data.name != "synthetic_faces" else ""
        raise FileNotFoundError(f"data.manual_dir is empty; {data.name} needs it.\n{layout}")
    return os.path.expanduser(data.manual_dir)


def builder_config(config: ml_collections.ConfigDict) -> FaceConfig:
    """The TFDS builder config for `config.data.name`, from the fergan config."""
    data = config.data
    if data.name not in BUILDERS:
        raise ValueError(f"data.name must be one of {sorted(BUILDERS)}, got {data.name!r}.")
    common = {
        "image_size": int(config.model.image_size),
        "channels": int(config.model.channels),
        "label_last_frames": int(data.label_last_frames),
    }
    if data.name == "synthetic_faces":
        seed = data.synthetic_seed if data.synthetic_seed >= 0 else config.seed
        extra = {
            "seed": int(seed),
            "num_subjects": int(data.num_subjects),
            "frames_per_sequence": int(data.frames_per_sequence),
            "nuisance": float(data.synthetic_nuisance),
            "style": float(data.synthetic_style),
        }
        if extra["num_subjects"] < 1:
            raise ValueError(f"data.num_subjects must be >= 1, got {data.num_subjects}.")
        return make_config(class_names=synthetic.EXPRESSIONS, extra=extra, **common)
    extra = {}
    if data.name == "expression_folder":
        extra = {"subject_regex": data.subject_regex, "sequence_regex": data.sequence_regex}
    return make_config(
        class_names=_class_names(data),
        align=align.resolve_mode(data.get("align", "none"), bool(data.crop_face)),
        face_margin=float(data.face_margin),
        extra=extra,
        **common,
    )


def make_builder(config: ml_collections.ConfigDict, data_dir: str) -> tfds.core.DatasetBuilder:
    """Instantiates (does not prepare) the builder for `config.data` under `data_dir`."""
    cls = BUILDERS.get(config.data.name)
    if cls is None:
        raise ValueError(f"data.name must be one of {sorted(BUILDERS)}, got {config.data.name!r}.")
    return cls(config=builder_config(config), data_dir=data_dir, file_format="array_record")


def prepare(builder: tfds.core.DatasetBuilder, manual_dir: str = "") -> None:
    """Builds the dataset into its data_dir unless it is already there.

    Raises FileNotFoundError showing the expected layout when a manual database folder is missing
    or empty (checked first, so nothing is written).
    """
    if builder.is_prepared():
        return
    manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if manual:
        path = os.path.expanduser(manual_dir) if manual_dir else ""
        if not path or not os.path.isdir(path) or not os.listdir(path):
            raise FileNotFoundError(
                f"Manual dir {manual_dir!r} for {builder.name} is missing or empty.\n{manual}"
            )
    download_config = tfds.download.DownloadConfig(
        manual_dir=os.path.expanduser(manual_dir) if manual_dir else None
    )
    builder.download_and_prepare(download_config=download_config, file_format="array_record")


del base  # Re-exported pieces above; keep the namespace small.
