"""TFDS builders for fergan's face databases, and their construction from a config.

Importing this package registers the builders with TFDS (`synthetic_faces`, `ck_plus`,
`oulu_casia`, `multipie`, `expression_folder`), so `tfds.builder` / `tfds.data_source` find them
by name.
"""

from __future__ import annotations

import os
import time

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from fergan import console
from fergan.data import align, face_renderer
from fergan.data.builders import base, ck_plus, image_folder, multipie, oulu_casia
from fergan.data.builders.base import (
    SEE_LAYOUT,
    SPLIT,
    FaceConfig,
    check_config,
    make_config,
    source_digest,
)
from fergan.data.builders.ck_plus import CkPlus
from fergan.data.builders.image_folder import ExpressionFolder
from fergan.data.builders.multipie import MultiPie
from fergan.data.builders.oulu_casia import OuluCasia
from fergan.data.builders.synthetic_faces import SyntheticFaces

BUILDERS = {
    "synthetic_faces": SyntheticFaces,
    "ck_plus": CkPlus,
    "oulu_casia": OuluCasia,
    "multipie": MultiPie,
    "expression_folder": ExpressionFolder,
}

__all__ = [
    "BUILDERS",
    "SPLIT",
    "CkPlus",
    "ExpressionFolder",
    "FaceConfig",
    "MultiPie",
    "OuluCasia",
    "SyntheticFaces",
    "builder_config",
    "check_neutral_frames",
    "example_subjects",
    "make_builder",
    "manual_dir",
    "prepare",
]


def _class_names(data: ml_collections.ConfigDict, root: str) -> tuple[str, ...]:
    listed = tuple(n.strip() for n in data.get("class_names", "").split(",") if n.strip())
    if data.name == "ck_plus":
        return ck_plus.CLASS_NAMES
    if data.name == "oulu_casia":
        return oulu_casia.CLASS_NAMES
    if data.name == "multipie":
        return multipie.CLASS_NAMES
    return listed or image_folder.folder_class_names(root)


def manual_dir(data: ml_collections.ConfigDict) -> str:
    """The resolved absolute path of `data.manual_dir`; FileNotFoundError when unset or missing."""
    if not data.manual_dir:
        raise FileNotFoundError(f"data.manual_dir is empty; {data.name} needs it ({SEE_LAYOUT}).")
    path = os.path.realpath(os.path.expanduser(data.manual_dir))
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"data.manual_dir={data.manual_dir!r} is not a folder; {SEE_LAYOUT} of {data.name}."
        )
    return path


def check_neutral_frames(data: ml_collections.ConfigDict) -> None:
    """ValueError when `data.neutral_first_frames` is on for a database without sequences
    (the builder's `without_sequences`)."""
    if not data.get("neutral_first_frames", False) or data.name not in BUILDERS:
        return
    reason = BUILDERS[data.name].without_sequences(data)
    if reason:
        raise ValueError(
            f"data.neutral_first_frames=True needs sequences: {reason} (synthetic_faces, "
            "ck_plus and oulu_casia always have them)."
        )


def synthetic_poses(data: ml_collections.ConfigDict) -> tuple[int, ...]:
    """`data.poses` ('-30,-15,0,15,30': yaw bins in degrees; '' = frontal set) as a tuple;
    ValueError names the key when it does not parse or when another database than
    synthetic_faces sets it (a real database's pose comes from its files)."""
    text = str(data.get("poses", "") or "").strip()
    if not text:
        return ()
    if data.name != "synthetic_faces":
        raise ValueError(
            f"data.poses={text!r} renders yaw bins for synthetic_faces only; {data.name} reads "
            "each face's pose from its files."
        )
    try:
        poses = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ValueError(
            f"data.poses={text!r} must be comma-separated integer yaw angles in degrees."
        ) from None
    face_renderer.check_poses(poses)
    return poses


def builder_config(config: ml_collections.ConfigDict) -> FaceConfig:
    """The TFDS builder config for `config.data.name`, from the fergan config.

    For a manual-folder database its name digests the folder's path and file listing too (see
    `base.source_digest`), so a changed folder gets its own dataset directory. Writes nothing.
    """
    data = config.data
    if data.name not in BUILDERS:
        raise ValueError(f"data.name must be one of {sorted(BUILDERS)}, got {data.name!r}.")
    common = {
        "image_size": int(config.model.image_size),
        "channels": int(config.model.channels),
        "label_last_frames": int(data.label_last_frames),
    }
    check_neutral_frames(data)
    poses = synthetic_poses(data)
    # Only when on, so the sets without neutral frames keep their names.
    neutral = {"neutral_first_frames": True} if data.get("neutral_first_frames", False) else {}
    if data.name == "synthetic_faces":
        seed = data.synthetic_seed if data.synthetic_seed >= 0 else config.seed
        extra = {
            "seed": int(seed),
            "num_subjects": int(data.num_subjects),
            "frames_per_sequence": int(data.frames_per_sequence),
            "nuisance": float(data.synthetic_nuisance),
            "style": float(data.synthetic_style),
        } | neutral
        if poses:  # Only when set, so the frontal sets keep their names.
            extra["poses"] = poses
        if extra["num_subjects"] < 1:
            raise ValueError(f"data.num_subjects must be >= 1, got {data.num_subjects}.")
        return make_config(class_names=face_renderer.EXPRESSIONS, extra=extra, **common)
    extra = dict(neutral)
    if data.name == "expression_folder":
        extra |= {"subject_regex": data.subject_regex, "sequence_regex": data.sequence_regex}
    root = manual_dir(data)
    return make_config(
        class_names=_class_names(data, root),
        align=align.resolve_mode(data.get("align", "none"), bool(data.crop_face)),
        face_margin=float(data.face_margin),
        extra=extra,
        source=source_digest(root),
        **common,
    )


def example_subjects(config: ml_collections.ConfigDict, face_config: FaceConfig) -> np.ndarray:
    """int [N]: the subject of each of the N labelled examples (neutral frames aside)
    `config.data` builds into, read from the
    source without decoding or writing anything (`face_config` = `builder_config(config)`).

    Raises ValueError, FileNotFoundError or DataError naming the option or file, exactly as
    building would, so callers can refuse bad data before anything is written.
    """
    data = config.data
    if data.name == "synthetic_faces":
        check_config(face_config)
        face_renderer.check_options(
            face_config.image_size, int(data.frames_per_sequence), face_config.label_last_frames
        )
        return face_renderer.frame_subjects(
            int(data.num_subjects),
            face_config.label_last_frames,
            num_poses=max(len(synthetic_poses(data)), 1),
        )
    records = BUILDERS[data.name].scan(face_config, manual_dir(data))
    return np.array([r.subject for r in records if not r.neutral], np.int64)


def make_builder(config: ml_collections.ConfigDict, data_dir: str) -> tfds.core.DatasetBuilder:
    """Instantiates (does not prepare) the builder for `config.data` under `data_dir`."""
    face_config = builder_config(config)  # Checks data.name first.
    cls = BUILDERS[config.data.name]
    return cls(config=face_config, data_dir=data_dir, file_format="array_record")


def prepare(builder: tfds.core.DatasetBuilder, manual_dir: str = "") -> None:
    """Builds the dataset into its data_dir unless it is already there.

    A manual database's folder is scanned and checked before any example is generated
    (`FaceFolderBuilder.scan`); `pipeline.check_data` runs the same checks without TFDS.
    """
    if builder.is_prepared():
        return
    path = os.path.expanduser(manual_dir) if manual_dir else ""
    if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None) and not os.path.isdir(path):
        raise FileNotFoundError(
            f"data.manual_dir={manual_dir!r} for {builder.name} is not a folder; {SEE_LAYOUT}."
        )
    download_config = tfds.download.DownloadConfig(manual_dir=path or None)
    tfds.disable_progress_bar()  # fergan's own progress line counts the examples instead.
    console.say(f"building dataset {builder.name} into {builder.data_dir}")
    start = time.time()
    builder.download_and_prepare(download_config=download_config, file_format="array_record")
    console.say(f"dataset built in {console.hms(time.time() - start)}")


del base  # Re-exported pieces above; keep the namespace small.
