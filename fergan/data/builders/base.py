"""Shared TFDS builder machinery: config, features, validation-first generation, alignment."""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from fergan import console
from fergan.data import align, masks, preprocess
from fergan.data.preprocess import DataError

# Where every error about a manual folder points (the layouts are too long for a one-line error).
SEE_LAYOUT = "see docs/data.md for the expected layout"

# Every builder writes its labelled frames to this single split; folds pick train/test from it.
SPLIT = "train"
# Stored datasets of an older version lack features; a new version rebuilds them.
DATASET_VERSION = "1.3.0"
DATASET_RELEASE_NOTES = {
    "1.0.0": "Initial release.",
    "1.1.0": "68-point `landmarks` feature; landmark alignment (data.align).",
    "1.2.0": "Face `mask` feature; `neutral` first frames (data.neutral_first_frames).",
    "1.3.0": "`pose` feature (yaw in degrees); synthetic yaw bins (data.poses).",
}


@dataclasses.dataclass(eq=False)
class FaceConfig(tfds.core.BuilderConfig):
    """Options shared by every face builder (part of the config name, so each set builds apart)."""

    image_size: int = 128
    channels: int = 1
    align: str = "none"  # fergan.data.align.MODES, after align.resolve_mode.
    face_margin: float = 0.2
    label_last_frames: int = 3
    class_names: tuple[str, ...] = ()
    # Builder-specific options as a sorted tuple of (key, value) pairs (hashable, JSON-able).
    extra: tuple[tuple[str, object], ...] = ()
    # Digest of the manual folder (`source_digest`); '' for sets generated from their options.
    source: str = ""

    def option(self, key: str, default=None):
        return dict(self.extra).get(key, default)


def make_config(**kwargs) -> FaceConfig:
    """A FaceConfig named by a digest of all its options, `source` included (distinct options or
    source files, distinct dirs: a changed folder is never served from an older build)."""
    kwargs.setdefault("extra", ())
    kwargs["extra"] = tuple(sorted(dict(kwargs["extra"]).items()))
    kwargs["class_names"] = tuple(kwargs.get("class_names", ()))
    digest = hashlib.sha1(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()
    name = f"{kwargs['image_size']}px_{kwargs['channels']}c_{digest[:10]}"
    return FaceConfig(name=name, version=DATASET_VERSION, **kwargs)


def _listing(root: str, prefix: str = "") -> Iterator[tuple[str, int, int]]:
    try:
        entries = sorted(os.scandir(os.path.join(root, prefix)), key=lambda e: e.name)
        for entry in entries:
            rel = os.path.join(prefix, entry.name)
            if entry.is_dir():
                yield from _listing(root, rel)
            else:
                st = entry.stat()
                yield rel, st.st_size, st.st_mtime_ns
    except OSError as e:
        # Unreadable entries (permissions, a dangling link) would otherwise surface as tracebacks.
        path = os.path.join(root, prefix)
        raise DataError(f"Cannot list {path!r} under data.manual_dir: {e}") from e


def source_listing(root: str) -> list[tuple[str, int, int]]:
    """(path relative to `root`, size in bytes, mtime in ns) of every file under `root`, sorted.

    Reads only directory entries (no file is opened), so it is cheap even for large databases.
    """
    return list(_listing(root))


def source_digest(root: str) -> str:
    """Hex digest of the resolved folder path and `source_listing(root)`: changes whenever a file
    under `root` is added, removed, resized or rewritten, or the folder moves."""
    path = os.path.realpath(root)
    text = json.dumps([path, source_listing(path)])
    return hashlib.sha1(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Record:
    """One labelled frame to be read from disk."""

    path: str
    label: int
    subject: int
    sequence: int
    frame: int
    is_peak: bool
    landmarks_path: str = ""  # The database's landmark file for this frame, if it has one.
    neutral: bool = False  # A sequence's first frame (data.neutral_first_frames): not labelled.
    pose: int = 0  # Yaw in degrees where the database names it (0: frontal or unknown).


def features(config: FaceConfig) -> tfds.features.FeaturesDict:
    """The feature spec every builder shares."""
    size, ch = config.image_size, config.channels
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(size, size, ch), encoding_format="png"),
            "label": tfds.features.ClassLabel(names=list(config.class_names)),
            "subject": np.int32,
            "sequence": np.int32,
            "frame": np.int32,
            "is_peak": np.bool_,
            # (x, y) output-image pixels after alignment and resize; NaN where unknown.
            "landmarks": tfds.features.Tensor(shape=(align.NUM_LANDMARKS, 2), dtype=np.float32),
            # The face region, 255 inside (fergan.data.masks; the renderer's own for the
            # synthetic set).
            "mask": tfds.features.Image(shape=(size, size, 1), encoding_format="png"),
            # A sequence's first frame: a neutral face whose `label` is its sequence's label.
            "neutral": np.bool_,
            # Head yaw in degrees (synthetic yaw bins, Multi-PIE cameras); 0 where not known.
            "pose": np.int32,
        }
    )


def example_key(sequence: int, frame: int, neutral: bool) -> str:
    """The example's TFDS key, unique even where a neutral frame is also a labelled one."""
    return f"{sequence}_{frame}" + ("_neutral" if neutral else "")


def mask_image(mask: np.ndarray) -> np.ndarray:
    """uint8 [S, S, 1]: a bool [S, S] face mask as the `mask` feature stores it."""
    return (np.asarray(mask, bool)[..., None] * np.uint8(255)).astype(np.uint8)


def first_frame_record(
    chosen: Sequence[Record], first_frame: int, path: str, landmarks_path: str = ""
) -> list[Record]:
    """[the neutral record of a sequence] when its first frame (number `first_frame`, image
    `path`, landmark file `landmarks_path`) is not among the sequence's labelled records
    `chosen`, else [] (a sequence that short has no frame to spare)."""
    if any(r.frame == first_frame for r in chosen):
        return []
    first = dataclasses.replace(chosen[0], path=path, frame=first_frame, is_peak=False)
    return [dataclasses.replace(first, neutral=True, landmarks_path=landmarks_path)]


def last_frames(names: Sequence[str], k: int) -> list[tuple[int, str]]:
    """(position, name) of the last k of a sequence's sorted frame names."""
    names = sorted(names)
    start = max(len(names) - k, 0)
    return [(i, names[i]) for i in range(start, len(names))]


def check_config(config: FaceConfig) -> None:
    """Raises ValueError naming the bad option."""
    if not 16 <= config.image_size <= 1024:
        raise ValueError(f"model.image_size must be in [16, 1024], got {config.image_size}.")
    if config.channels not in (1, 3):
        raise ValueError(f"model.channels must be 1 or 3, got {config.channels}.")
    if config.label_last_frames < 1:
        raise ValueError(f"data.label_last_frames must be >= 1, got {config.label_last_frames}.")


class QuietBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A builder that reports its build in the log, not on stdout: fergan prints its own
    progress line (TFDS prints its size and location on stdout unconditionally otherwise)."""

    @staticmethod
    def without_sequences(data) -> str:
        """Why `data` (the config's data section) gives this database no sequences, so no
        neutral first frames; '' when it has them."""
        return ""

    def _log_download_bytes(self) -> None:
        logging.info("Preparing dataset %s in %s.", self.name, self.data_dir)

    def _log_download_done(self) -> None:
        logging.info("Dataset %s prepared in %s.", self.name, self.data_dir)


class FaceFolderBuilder(QuietBuilder, skip_registration=True):
    """Base for builders reading a hand-downloaded database from `manual_dir`.

    Subclasses implement `records`, which scans and validates the whole folder (without decoding
    images) before anything is written, so label and layout errors never leave a partial dataset
    behind (TFDS also deletes its incomplete directory when a later image fails to decode).
    """

    VERSION = tfds.core.Version(DATASET_VERSION)
    RELEASE_NOTES = DATASET_RELEASE_NOTES
    BUILDER_CONFIGS = ()

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=features(self.builder_config))

    @staticmethod
    @abc.abstractmethod
    def records(config: FaceConfig, root: str) -> list[Record]:
        """Scans `root` and returns every labelled frame, raising DataError on bad input."""

    @classmethod
    def scan(cls, config: FaceConfig, root: str) -> list[Record]:
        """Every labelled frame under `root`, after checking the options; decodes and writes
        nothing. Raises ValueError, FileNotFoundError or DataError naming the option or file."""
        check_config(config)
        records = cls.records(config, root)
        if not records:
            raise DataError(f"No labelled images found under {root!r}; {SEE_LAYOUT}.")
        return records

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        records = self.scan(cfg, os.fspath(dl_manager.manual_dir))
        have_files = all(r.landmarks_path for r in records)
        aligner = align.choose(cfg.align, have_files, cfg.face_margin)
        logging.info("%s: %s", self.name, aligner.describe())
        return {SPLIT: self._generate_examples(records, aligner)}

    def _generate_examples(
        self, records: list[Record], aligner: align.Aligner
    ) -> Iterator[tuple[str, dict]]:
        cfg = self.builder_config
        by_seq: dict[int, list[Record]] = defaultdict(list)
        for r in records:
            by_seq[r.sequence].append(r)
        for seq in console.track(sorted(by_seq), "dataset", unit="seq"):
            frames = sorted(by_seq[seq], key=lambda r: r.frame)
            images = [preprocess.decode_image(r.path) for r in frames]
            paths = [r.landmarks_path for r in frames]
            aligned = align.align_sequence(aligner, images, paths, cfg.image_size)
            for r, (image, landmarks) in zip(frames, aligned, strict=True):
                yield (
                    example_key(r.sequence, r.frame, r.neutral),
                    {
                        "image": preprocess.encode_png(preprocess.to_channels(image, cfg.channels)),
                        "label": r.label,
                        "subject": r.subject,
                        "sequence": r.sequence,
                        "frame": r.frame,
                        "is_peak": r.is_peak,
                        "landmarks": landmarks,
                        "mask": mask_image(masks.landmark_face_mask(landmarks, cfg.image_size)),
                        "neutral": r.neutral,
                        "pose": r.pose,
                    },
                )


def subject_numbers(names: Sequence[str]) -> dict[str, int]:
    """Maps subject names to ints: their value when all are numeric, else their sorted rank."""
    unique = sorted(set(names))
    if all(n.isdigit() for n in unique):
        return {n: int(n) for n in unique}
    return {n: i for i, n in enumerate(unique)}
