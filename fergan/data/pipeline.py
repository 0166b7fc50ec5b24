"""Fold selection over the TFDS data source and the grain pipeline serving FESR's triplets.

Each training element is (x, y, x_pr, y_target): a labelled frame, another training frame of the
same class, and a target label != y. Everything random is derived from `config.seed` and the
global example index (hence the step), so any process count and any resume see the same data.
"""

from __future__ import annotations

import dataclasses
import os

import grain
import ml_collections
import numpy as np
from absl import flags

from fergan.data import builders, folds, heatmaps, preprocess
from fergan.data.preprocess import to_float


class IndexedSource:
    """A random-access view of selected examples of a TFDS data source (grain source protocol).

    `labels`, `subjects`, `sequences`, `frames`, `is_peak` and `poses` hold the metadata of the
    selected examples, read once at construction.
    """

    def __init__(self, source, indices: np.ndarray, meta: dict[str, np.ndarray]):
        self._source = source
        self.indices = np.asarray(indices, np.int64)
        self.labels = meta["label"][self.indices].astype(np.int32)
        self.subjects = meta["subject"][self.indices].astype(np.int32)
        self.sequences = meta["sequence"][self.indices].astype(np.int32)
        self.frames = meta["frame"][self.indices].astype(np.int32)
        self.is_peak = meta["is_peak"][self.indices].astype(bool)
        self.poses = meta["pose"][self.indices].astype(np.int32)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self._source[int(self.indices[i])]

    def image(self, i: int) -> np.ndarray:
        """uint8 [H, W, C] of example i."""
        return self[i]["image"]


@dataclasses.dataclass(frozen=True)
class Datasets:
    """One fold of a prepared database."""

    train: IndexedSource  # Labelled training frames (last frames of training subjects' sequences).
    test: IndexedSource  # Peak frames of the held-out subjects.
    # Neutral first frames of the training / held-out subjects' sequences (empty unless
    # data.neutral_first_frames); `labels` are their sequences' labels.
    train_neutral: IndexedSource
    test_neutral: IndexedSource
    class_names: tuple[str, ...]
    num_train_subjects: int
    num_test_subjects: int
    image_size: int
    channels: int
    name: str
    data_dir: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _read_meta(source) -> dict[str, np.ndarray]:
    keys = ("label", "subject", "sequence", "frame", "is_peak", "neutral", "pose")
    rows = [source[i] for i in range(len(source))]
    return {k: np.array([r[k] for r in rows]) for k in keys}


def check_classes(num_classes: int, class_names: tuple[str, ...], name: str) -> None:
    """Raises ValueError unless the model's `num_classes` matches the dataset's >= 2 classes."""
    if num_classes != len(class_names):
        raise ValueError(
            f"model.num_classes={num_classes} but dataset {name} has {len(class_names)} classes "
            f"{class_names}; set model.num_classes={len(class_names)}."
        )
    if len(class_names) < 2:  # y_target must differ from y.
        raise ValueError(f"Dataset {name} needs at least 2 classes, got {class_names}.")


def check_batch_size(batch_size: int, num_train: int) -> None:
    """Raises ValueError unless 1 <= `batch_size` <= `num_train` (the fold's training frames)."""
    if not 1 <= batch_size <= num_train:
        raise ValueError(
            f"train.batch_size={batch_size} must be in [1, {num_train}], {num_train} being the "
            "number of training frames of the fold."
        )


def check_data(config: ml_collections.ConfigDict) -> None:
    """Validates everything about the data that needs no writing, and writes nothing.

    Checks `data.name`, the manual folder and its layout (scanned, no image decoded), the builder
    options, `model.num_classes` against the dataset, `data.num_folds` against its subjects,
    `data.fold`, `train.batch_size` against the fold's training frames, and that a face cascade
    is installed when alignment may crop (`data.align` 'crop' or 'auto'). Only image decoding is
    left to the build.

    Raises:
      ValueError, FileNotFoundError or preprocess.DataError, with a one-line message naming the
      config key or file.
    """
    face_config = builders.builder_config(config)
    check_classes(int(config.model.num_classes), face_config.class_names, config.data.name)
    if face_config.align in ("crop", "auto"):  # 'auto' falls back to the cascade crop.
        preprocess.check_detector()
    subjects = builders.example_subjects(config, face_config)
    train_idx, _ = folds.fold_indices(
        subjects, config.data.num_folds, config.data.fold, config.data.fold_seed
    )
    check_batch_size(int(config.train.batch_size), len(train_idx))


def build_datasets(config: ml_collections.ConfigDict, data_dir: str) -> Datasets:
    """Prepares `config.data.name` into `data_dir` if needed and selects fold `config.data.fold`.

    `check_data(config)` runs first, so bad options or data raise before anything is written.

    Raises:
      ValueError, FileNotFoundError or preprocess.DataError: see `check_data`.
    """
    check_data(config)
    data_dir = os.path.expanduser(data_dir)
    builder = builders.make_builder(config, data_dir)
    builders.prepare(builder, config.data.manual_dir)
    source = builder.as_data_source(builders.SPLIT)
    meta = _read_meta(source)
    train_idx, test_idx = folds.fold_indices(
        meta["subject"], config.data.num_folds, config.data.fold, config.data.fold_seed
    )
    neutral = meta["neutral"].astype(bool)
    select = lambda idx: IndexedSource(source, idx, meta)
    train = select(train_idx[~neutral[train_idx]])
    train_neutral, test_neutral = (
        select(train_idx[neutral[train_idx]]),
        select(test_idx[neutral[test_idx]]),
    )
    test_idx = test_idx[~neutral[test_idx]]
    test = select(test_idx[meta["is_peak"][test_idx]])  # Peak frame only, as in the protocol.
    return Datasets(
        train=train,
        test=test,
        train_neutral=train_neutral,
        test_neutral=test_neutral,
        class_names=tuple(builder.builder_config.class_names),
        num_train_subjects=len(np.unique(train.subjects)),
        num_test_subjects=len(np.unique(test.subjects)),
        image_size=int(config.model.image_size),
        channels=int(config.model.channels),
        name=config.data.name,
        data_dir=data_dir,
    )


def steps_per_epoch(config: ml_collections.ConfigDict, datasets: Datasets) -> int:
    """Global steps per pass over the training frames; ValueError for a bad `train.batch_size`."""
    check_batch_size(int(config.train.batch_size), len(datasets.train))
    return len(datasets.train) // config.train.batch_size


class _WithIndex:
    """(global example index, training position) pairs, before sharding."""

    def __call__(self, index: int, position: int) -> tuple[int, int]:
        return index, int(position)


# Optional features of a training example (a method's `batch_features`).
BATCH_FEATURES = ("side", "mask", "neutral", "target", "pair", "own_neutral")


def unit_landmarks(landmarks: np.ndarray, size: int) -> np.ndarray:
    """float32 [..., 68, 2]: (x, y) pixels of a `size` image scaled to [-1, 1]."""
    return 2.0 * np.asarray(landmarks, np.float32) / np.float32(size - 1) - np.float32(1.0)


def _mask(row: dict) -> np.ndarray:
    """float32 [S, S, 1] in {0, 1}: a stored example's face mask."""
    return (row["mask"] > 127).astype(np.float32)


class _TripletLoader:
    """Global example index + training position -> one (x, y, x_pr, y_target) example, plus the
    optional `features` (BATCH_FEATURES): the landmark heatmap `s` of x ('side'), x's face mask
    ('mask'), a neutral face of a training subject with its mask ('neutral'), and a face of x's own
    subject showing y_target with its landmarks ('target'); each is flipped with its face. For
    paired synthesis: a face of x's subject showing y_target ('pair') and the neutral first frame
    of x's own sequence ('own_neutral'), each flipped with x so that it is a pixel target of G."""

    def __init__(
        self,
        source: IndexedSource,
        num_classes: int,
        batch: int,
        seed: int,
        flip: bool,
        features: tuple[str, ...] = (),
        neutral: IndexedSource | None = None,
    ):
        self.source = source
        self.num_classes = num_classes
        self.batch = batch
        self.seed = seed
        self.flip = flip
        self.features = features
        self.neutral = neutral
        self.by_class = [np.flatnonzero(source.labels == k) for k in range(num_classes)]
        # Positions of each subject's frames, and of each (subject, class)'s: 'target' draws.
        self.by_subject = {s: np.flatnonzero(source.subjects == s) for s in set(source.subjects)}
        self.by_subject_class = {
            (s, k): own[source.labels[own] == k]
            for s, own in self.by_subject.items()
            for k in set(source.labels[own])
        }
        # (subject, sequence) -> position of the sequence's neutral first frame: 'own_neutral'.
        self.neutral_of_sequence = {}
        if neutral is not None:
            for i, key in enumerate(zip(neutral.subjects, neutral.sequences, strict=True)):
                self.neutral_of_sequence.setdefault((int(key[0]), int(key[1])), i)

    def __call__(self, item: tuple[int, int]) -> dict[str, np.ndarray]:
        index, pos = item
        step, slot = divmod(index, self.batch)
        rng = np.random.default_rng([self.seed, 0x7219, step, slot])
        y = int(self.source.labels[pos])
        same = self.by_class[y]
        if len(same) > 1:
            # Uniform over the other frames of the class: draw among len-1 and skip `pos`.
            j = int(rng.integers(len(same) - 1))
            partner = int(same[j + (same[j] >= pos)])
        else:
            partner = pos
        offset = int(rng.integers(self.num_classes - 1))
        y_target = offset + (offset >= y)
        row, x_pr = self.source[pos], self.source.image(partner)
        x, landmarks, mask = row["image"], row["landmarks"], _mask(row)
        flipped = False
        if self.flip:
            flipped = bool(rng.random() < 0.5)
            if flipped:
                x, landmarks = heatmaps.flip_face(x, landmarks)
                mask = mask[:, ::-1]
            x_pr = x_pr[:, ::-1] if rng.random() < 0.5 else x_pr
        extra = {}
        if "side" in self.features:
            extra["s"] = heatmaps.landmark_heatmap(landmarks, x.shape[1], x.shape[-1])
        if "mask" in self.features:
            extra["mask"] = np.ascontiguousarray(mask)
        if "neutral" in self.features:
            # Drawn after every other draw, so the other keys are the same with or without it.
            neutral = self.neutral[int(rng.integers(len(self.neutral)))]
            face, face_mask = neutral["image"], _mask(neutral)
            if self.flip and rng.random() < 0.5:
                face, face_mask = face[:, ::-1], face_mask[:, ::-1]
            extra["x_neutral"] = to_float(np.ascontiguousarray(face))
            extra["mask_neutral"] = np.ascontiguousarray(face_mask)
        if "target" in self.features:
            extra |= self._target(pos, y_target, rng)
        if "pair" in self.features:
            extra |= self._pair(pos, y_target, flipped, rng)
        if "own_neutral" in self.features:
            extra |= self._own_neutral(pos, flipped)
        return extra | {
            "x": to_float(x),
            "y": np.int32(y),
            "x_pr": to_float(x_pr),
            "y_target": np.int32(y_target),
            # Position in the global batch: keys the step's per-sample noise, so results do not
            # depend on which process or device serves the example.
            "slot": np.int32(slot),
        }

    def _subject_frame(self, pos: int, label: int, rng: np.random.Generator) -> int | None:
        """A position drawn uniformly among the frames of example `pos`'s subject that show
        `label`; None, drawing nothing, when the subject has none."""
        pool = self.by_subject_class.get((int(self.source.subjects[pos]), label))
        return None if pool is None else int(pool[int(rng.integers(len(pool)))])

    def _target(self, pos: int, y_target: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A frame of example `pos`'s subject: one showing `y_target` (any pose) when the subject
        has one, else any of its other frames; with its label and [-1, 1] landmarks."""
        target = self._subject_frame(pos, y_target, rng)
        if target is None:
            own = self.by_subject[int(self.source.subjects[pos])]
            pool = own[own != pos] if len(own) > 1 else own
            target = int(pool[int(rng.integers(len(pool)))])
        row = self.source[target]
        face, landmarks = row["image"], row["landmarks"]
        if self.flip and rng.random() < 0.5:
            face, landmarks = heatmaps.flip_named_face(face, landmarks)
        return {
            "x_target": to_float(np.ascontiguousarray(face)),
            "g_target": unit_landmarks(landmarks, face.shape[1]).reshape(-1),
            "y_t": np.int32(self.source.labels[target]),
        }

    def _pair(
        self, pos: int, y_target: int, flipped: bool, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """A frame of example `pos`'s subject showing `y_target`, flipped with x: `x_pair`, and
        `pair_valid` 1.0; where the subject has no such frame, x itself and 0.0."""
        target = self._subject_frame(pos, y_target, rng)
        face = self.source.image(pos if target is None else target)
        face = face[:, ::-1] if flipped else face
        return {
            "x_pair": to_float(np.ascontiguousarray(face)),
            "pair_valid": np.float32(target is not None),
        }

    def _own_neutral(self, pos: int, flipped: bool) -> dict[str, np.ndarray]:
        """The neutral first frame of example `pos`'s sequence, flipped with x: `x_own_neutral`,
        and `own_neutral_valid` 1.0; where the sequence has none stored, x itself and 0.0."""
        key = (int(self.source.subjects[pos]), int(self.source.sequences[pos]))
        found = self.neutral_of_sequence.get(key)
        face = self.source.image(pos) if found is None else self.neutral.image(found)
        face = face[:, ::-1] if flipped else face
        return {
            "x_own_neutral": to_float(np.ascontiguousarray(face)),
            "own_neutral_valid": np.float32(found is not None),
        }


def make_train_iterator(
    config: ml_collections.ConfigDict,
    datasets: Datasets,
    *,
    process_index: int = 0,
    process_count: int = 1,
    features: tuple[str, ...] = (),
) -> grain.DatasetIterator:
    """Infinite iterator over this process's share of each global training batch.

    Global batch `config.train.batch_size` = B; each process gets B / process_count examples per
    step (a disjoint slice of the same global batch). Epochs are reshuffled from `config.seed`.
    The iterator supports `get_state()` / `set_state()` for exact resumption.

    Yields:
      dicts with `x` float32 [b, H, W, C] in [-1, 1], `y` int32 [b], `x_pr` float32 [b, H, W, C]
      (same class as `y`), `y_target` int32 [b] (!= y); b = B / process_count; and per
      `features` (BATCH_FEATURES): 'side' `s` float32 [b, H, W, C] in [-1, 1], the landmark
      heatmap of x; 'mask' `mask` float32 [b, H, W, 1] in {0, 1}, x's face mask; 'neutral'
      `x_neutral` [b, H, W, C] and `mask_neutral` [b, H, W, 1], a neutral face of a training
      subject drawn uniformly per example (data.neutral_first_frames), with its mask; 'target'
      `x_target` [b, H, W, C], a face of x's subject showing y_target where it has one (else
      another of its faces), `g_target` float32 [b, 136] its landmarks in [-1, 1] ((x, y) pairs),
      and `y_t` int32 [b] its label; 'pair' `x_pair` [b, H, W, C], a face of x's subject showing
      y_target, flipped with x, and `pair_valid` float32 [b] (0 where the subject has none);
      'own_neutral' `x_own_neutral` [b, H, W, C], the neutral first frame of x's sequence,
      flipped with x (data.neutral_first_frames), and `own_neutral_valid` float32 [b].
    """
    batch = int(config.train.batch_size)
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must be in [0, {process_count}).")
    if batch % process_count:
        raise ValueError(
            f"train.batch_size={batch} must be divisible by the process count {process_count}."
        )
    check_classes(datasets.num_classes, datasets.class_names, datasets.name)
    if len(datasets.train) == 0:
        raise ValueError(f"Fold {config.data.fold} of {datasets.name} has no training frames.")
    unknown = sorted(set(features) - set(BATCH_FEATURES))
    if unknown:
        raise ValueError(f"Unknown batch features {unknown}; allowed: {BATCH_FEATURES}.")
    if {"neutral", "own_neutral"} & set(features) and len(datasets.train_neutral) == 0:
        raise ValueError(
            f"Fold {config.data.fold} of {datasets.name} has no neutral training faces; set "
            "data.neutral_first_frames=True."
        )
    seed = int(config.seed)
    loader = _TripletLoader(
        datasets.train,
        datasets.num_classes,
        batch,
        seed,
        config.data.flip,
        tuple(features),
        datasets.train_neutral,
    )
    ds = grain.MapDataset.range(len(datasets.train)).shuffle(seed=seed % 2**32).repeat(None)
    ds = ds.map_with_index(_WithIndex())
    ds = ds[process_index::process_count]
    ds = ds.map(loader).batch(batch // process_count, drop_remainder=True)
    read = grain.ReadOptions(
        num_threads=int(config.data.read_threads), prefetch_buffer_size=int(config.data.prefetch)
    )
    it_ds = ds.to_iter_dataset(read)
    if config.data.worker_count > 0:
        # grain's worker processes read absl flags; outside absl.app (tests, notebooks) they are
        # unparsed, so take the defaults.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it_ds = it_ds.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=int(config.data.worker_count),
                per_worker_buffer_size=int(config.data.worker_buffer_size),
            )
        )
    return iter(it_ds)


def eval_arrays(datasets: Datasets, split: str = "test") -> dict[str, np.ndarray]:
    """Every example of `split` ('train', 'test', 'train_neutral' or 'test_neutral') as numpy
    arrays.

    Returns:
      `x` float32 [N, H, W, C] in [-1, 1], `y` int32 [N], `subject` int32 [N], `sequence` int32 [N],
      `frame` int32 [N], `pose` int32 [N] (yaw in degrees), `landmarks` float32 [N, 68, 2]
      ((x, y) pixels, NaN where unknown).
    """
    splits = ("train", "test", "train_neutral", "test_neutral")
    if split not in splits:
        raise ValueError(f"split must be one of {splits}, got {split!r}.")
    src: IndexedSource = getattr(datasets, split)
    shape = (0, datasets.image_size, datasets.image_size, datasets.channels)
    rows = [src[i] for i in range(len(src))]  # Each example decoded once.
    x = np.stack([r["image"] for r in rows]) if rows else np.zeros(shape, np.uint8)
    landmarks = np.stack([r["landmarks"] for r in rows]) if rows else np.zeros((0, 68, 2))
    return {
        "x": to_float(x),
        "y": src.labels.copy(),
        "subject": src.subjects.copy(),
        "sequence": src.sequences.copy(),
        "frame": src.frames.copy(),
        "pose": src.poses.copy(),
        "landmarks": landmarks.astype(np.float32),
    }


def data_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Where TFDS datasets are built and read: `data.data_dir`, else `<workdir>/tfds`."""
    return config.data.data_dir or os.path.join(workdir, "tfds")
