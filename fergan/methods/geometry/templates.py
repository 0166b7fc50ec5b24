"""The landmark template bank of the synthetic stage (Sec. III-C, Fig. 5): target geometries
taken from training faces only, each labelled with its face's expression and pose.

The paper takes landmarks "from 60 arbitrary facial images" covering the poses and expressions.
The decision: `geometry.templates` faces drawn from the fold's labelled training frames (never a
held-out subject), spread over the (pose, expression) cells as evenly as the data allows, the
draw keyed by `config.seed`.
"""

import dataclasses

import numpy as np

from fergan.data import pipeline
from fergan.methods.geometry.networks import NUM_LANDMARK_COORDS


@dataclasses.dataclass(frozen=True)
class TemplateBank:
    """T templates: landmarks (flattened [T * 136] in [-1, 1]), labels [T], poses [T] (yaw in
    degrees) and subjects [T]. Tuples, so a model holding the bank stays hashable."""

    landmarks: tuple[float, ...]
    labels: tuple[int, ...]
    poses: tuple[int, ...]
    subjects: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def landmark_array(self) -> np.ndarray:
        """float32 [T, 136]."""
        return np.asarray(self.landmarks, np.float32).reshape(len(self), NUM_LANDMARK_COORDS)

    def for_class(self, label: int) -> int:
        """The index of the template of class `label` nearest the frontal pose (the editor's
        target geometry); ValueError when the bank has none of that class."""
        candidates = [i for i, y in enumerate(self.labels) if y == label]
        if not candidates:
            raise ValueError(f"the template bank has no face of class {label}")
        return min(candidates, key=lambda i: (abs(self.poses[i]), i))


def _cell_order(labels: np.ndarray, poses: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions in round-robin order over the (pose, label) cells, each cell shuffled: the
    first T of them spread T templates as evenly as the cells allow."""
    cells: dict[tuple[int, int], list[int]] = {}
    for i in rng.permutation(len(labels)):
        cells.setdefault((int(poses[i]), int(labels[i])), []).append(int(i))
    queues = [cells[key] for key in sorted(cells)]
    order = []
    for depth in range(max(map(len, queues))):
        order += [q[depth] for q in queues if depth < len(q)]
    return np.asarray(order, np.int64)


def select_templates(train: "pipeline.IndexedSource", count: int, seed: int) -> TemplateBank:
    """`count` (>= 1, `make_hparams` checks it) templates from the labelled training frames
    `train`, at most one per frame."""
    rng = np.random.default_rng([seed, 0x7E3])
    chosen = _cell_order(train.labels, train.poses, rng)[:count]
    rows = [train[int(i)] for i in chosen]
    size = rows[0]["image"].shape[0]
    marks = np.stack([pipeline.unit_landmarks(r["landmarks"], size).reshape(-1) for r in rows])
    return TemplateBank(
        landmarks=tuple(float(v) for v in marks.reshape(-1)),
        labels=tuple(int(v) for v in train.labels[chosen]),
        poses=tuple(int(v) for v in train.poses[chosen]),
        subjects=tuple(int(v) for v in train.subjects[chosen]),
    )


def random_templates(count: int, num_classes: int, seed: int) -> TemplateBank:
    """Uniform random landmarks with cycling labels: a bank of the right shapes for timing the
    step without data (`fergan.benchmarks.step`); never used by a training run."""
    rng = np.random.default_rng(seed)
    marks = rng.uniform(-1, 1, count * NUM_LANDMARK_COORDS).astype(np.float32)
    return TemplateBank(
        landmarks=tuple(float(v) for v in marks),
        labels=tuple(i % num_classes for i in range(count)),
        poses=(0,) * count,
        subjects=(-1,) * count,
    )
