"""The method interface: what the shared machinery needs from one method.

A method (`fergan/methods/<name>/`) owns its networks, training state, training step, variants
and the few functions evaluation calls. Everything else is shared and knows no method: the
training loop and its data-parallel drivers, replicas, checkpoints, data, held-out evaluation,
cross-validation, launch and the CLI. They see a method only through `Method` and the `Model`
its `build` returns.

A model is a frozen, hashable dataclass (network definitions and static hyper-parameters: no
arrays), so jitted functions take it as a static argument. A state is a `flax.struct` dataclass
with a scalar int32 `step` field: the loop reads the step, replicas share it, checkpoints store
the whole tree.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np

from fergan.types import Batch, Editor, FeatureFn, Metrics, PyTree

__all__ = ["Batch", "Editor", "FeatureFn", "Method", "Metrics", "Model", "PyTree"]


class Model(Protocol):
    """What the shared code reads from a built model (methods add their own fields)."""

    image_size: int
    channels: int
    num_classes: int
    total_steps: int  # Training iterations of the whole run.
    pre_steps: int  # Iterations of a first stage (0 when the method has none).


@dataclasses.dataclass(frozen=True)
class Method:
    """One method as a set of pure functions.

    Required:
      variants: variant name -> the method's static switches (`config.variant` picks one).
      build(config, steps_per_epoch) -> Model: validated networks and static hyper-parameters.
      init_state(model, seed, identity_params | None) -> state: fresh parameters and optimizer
        states, every key derived from `seed`; `identity_params` are the pretrained LightCNN-29
        parameters (None: the method draws them, untrained).
      train_step(model, state, batch, axis_name) -> (state, metrics): one iteration on this
        device's share of the batch (x, x_pr [B, S, S, c], y, y_target [B], optional slot [B]);
        reduces over `axis_name` with lax.pmean (None: one device) and returns scalar metrics.
      evaluate_batch(model, state, x, y) -> per-example outputs (jitted): `prediction` [B] (the
        recognizer's class), `feature` [B, F] (its feature, Fig. 9); any `<name>_prediction`
        becomes `<name>_accuracy` and any other [B] output its mean in the held-out metrics.
      parameters(state) -> {network name: parameters} for the parameter overview.
    Optional (None when the method has no generator or no identity network):
      editor(model, state) -> Editor | None: renders faces with a target expression/intensity.
      synthetic_faces(model, state, per_class, seed) -> (faces [P*K, S, S, c], labels [P*K]).
      identity_features(model, state) -> FeatureFn: the identity features of verification.
      write_samples(model, state, sources, class_names, folder, seed) -> {name: image grid}:
        the method's sample figures, written into `folder`; `sources` are the held-out faces
        its edits start from (the test faces, or with `edits_from_neutral` the neutral ones).
      check_config(config): method keys that can be checked before anything is built.
      attach_data(model, config, datasets) -> Model: the model with fields drawn from the fold's
        data (`fergan.data.pipeline.Datasets`; geometry's template bank of training faces),
        called once after `build` by every run that has data.
      prepare(config, folder): sets the config keys naming pretrained files the method needs
        besides the identity network (trained into `folder` first when missing); `config` is an
        editable copy, resolved before the run (or a CV fold) starts.
      stage_starts(model) -> (s_1, ...): the first steps of the stages after the first, for a
        method whose stages are a function of the step alone. Its `train_step` then takes a
        static `stage` (0, 1, ...) and the loop compiles one iteration per stage (`iterations`),
        so no iteration carries another stage's work (CPU gating computes both branches).
    Constants:
      resume_keys: config keys whose change alters the checkpoint's shapes or meaning.
      progress_metrics: train metric name -> short label on the progress line.
      batch_features: optional training-batch features beyond x, x_pr, y, y_target: 'side' (the
        landmark heatmap s of x, `fergan.data.heatmaps`), 'mask', 'neutral', 'target', 'pair',
        'own_neutral' (`fergan.data.pipeline.make_train_iterator`).
      resume_defaults: values of resume keys that runs written before the key existed had.
      tsne_first: variants whose t-SNE panels stand first, side by side, in a CV's figure.
      edits_intensity: whether the editor honours its intensities (else the intensity metrics
        are not computed).
      edits_from_neutral: the editor translates neutral faces (data.neutral_first_frames): the
        edit metrics start from the held-out subjects' neutral faces, every class a target.
      config_batch_features(config) -> features the config asks for besides `batch_features`
        (FESR's paired synthesis loss); `features(config)` gives both.
    Optional, evaluation:
      extra_metrics(model, state, sources) -> {name: float}: the method's own held-out metrics
        on the editor's inputs `sources` (pipeline.eval_arrays of the test or neutral faces).
    """

    name: str
    variants: Mapping[str, Any]
    build: Callable[[ml_collections.ConfigDict, int], Model]
    init_state: Callable[[Any, int, PyTree | None], PyTree]
    train_step: Callable[..., tuple[PyTree, Metrics]]
    evaluate_batch: Callable[[Any, PyTree, jax.Array, jax.Array], dict[str, jax.Array]]
    parameters: Callable[[PyTree], dict[str, PyTree]]
    editor: Callable[[Any, PyTree], Editor | None] | None = None
    synthetic_faces: Callable[..., tuple[np.ndarray, np.ndarray] | None] | None = None
    identity_features: Callable[[Any, PyTree], FeatureFn] | None = None
    write_samples: Callable[..., dict[str, np.ndarray]] | None = None
    check_config: Callable[[ml_collections.ConfigDict], None] | None = None
    prepare: Callable[[ml_collections.ConfigDict, str], None] | None = None
    attach_data: Callable[[Any, ml_collections.ConfigDict, Any], Model] | None = None
    stage_starts: Callable[[Any], tuple[int, ...]] | None = None
    resume_keys: tuple[str, ...] = ()
    progress_metrics: Mapping[str, str] = dataclasses.field(default_factory=dict)
    resume_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch_features: tuple[str, ...] = ()
    tsne_first: tuple[str, ...] = ()
    edits_intensity: bool = True
    edits_from_neutral: bool = False
    extra_metrics: Callable[[Any, PyTree, dict], dict] | None = None
    config_batch_features: Callable[[ml_collections.ConfigDict], tuple[str, ...]] | None = None

    @property
    def has_identity_network(self) -> bool:
        """Whether the method has the LightCNN-29 identity network (it gives `identity_features`).
        Only then does the shared code pretrain, check or load `identity.*` weights; any other
        method's `init_state` gets `identity_params=None`."""
        return self.identity_features is not None

    def features(self, config: ml_collections.ConfigDict) -> tuple[str, ...]:
        """The training-batch features a run of `config` reads (`batch_features` and those of
        `config_batch_features`)."""
        extra = () if self.config_batch_features is None else self.config_batch_features(config)
        return self.batch_features + tuple(f for f in extra if f not in self.batch_features)

    def iterations(self, model: Model) -> list[tuple[int, int, Callable]]:
        """[(first step, end step, per-device body(state, batch, axis_name))] covering
        [0, model.total_steps) in order, empty stages left out: one body for the whole run, or
        one per stage with `stage_starts`."""
        if self.stage_starts is None:
            return [(0, model.total_steps, functools.partial(self.train_step, model))]
        bounds = (0, *self.stage_starts(model), model.total_steps)
        return [
            (first, end, functools.partial(self.train_step, model, stage=i))
            for i, (first, end) in enumerate(itertools.pairwise(bounds))
            if first < end
        ]

    def variant(self, name: str) -> Any:
        """The switches of variant `name`; ValueError lists the method's variants."""
        if name not in self.variants:
            raise ValueError(
                f"variant={name!r} is unknown for method {self.name!r}; allowed: "
                f"{', '.join(self.variants)}"
            )
        return self.variants[name]
