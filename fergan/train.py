"""The training program: data, networks, the jitted iteration, logging, evaluation, checkpoints.

`train_and_evaluate(config, workdir)` runs (or resumes) one two-stage training and writes
TensorBoard events, checkpoints, `summary.json` and sample figures into `workdir`.
"""

import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, parameter_overview, periodic_actions
from clu import metrics as clu_metrics

from fergan import determinism
from fergan.checkpointing import Checkpoints
from fergan.data import pipeline
from fergan.evaluation import evaluate as evaluation
from fergan.evaluation import figures, synthesis
from fergan.evaluation.judge import JudgeContext
from fergan.identity import weights as identity_weights
from fergan.training.hparams import make_hparams
from fergan.training.networks import Networks, build_networks
from fergan.training.parallel import DataParallelStep, select_devices
from fergan.training.state import TrainState, init_replicas, init_state, replica
from fergan.variants import get_variant

# Keys whose change alters parameter shapes or the meaning of a checkpoint: a run refuses to
# resume across them.
RESUME_KEYS = (
    "variant",
    "model.image_size",
    "model.channels",
    "model.width",
    "model.latent_dim",
    "model.num_classes",
    "model.lightcnn_classes",
)
SWEEP_INTENSITIES = (0.0, 0.25, 0.5, 0.75, 1.0)
REPLICA_DATA = ("shared", "per_replica")


def replica_seeds(config: ml_collections.ConfigDict) -> list[int]:
    """Seeds of the `num_replicas` runs trained together: seed, seed + 1, ..."""
    return [int(config.seed) + i for i in range(int(config.num_replicas))]


class ReplicaIterators:
    """One data iterator per replica (seeded like that replica's own run), batches stacked to
    [S, B, ...]; its state is the list of the iterators' states."""

    def __init__(self, iterators):
        self.iterators = iterators

    def __next__(self):
        batches = [next(it) for it in self.iterators]
        return {k: np.stack([b[k] for b in batches]) for k in batches[0]}

    def get_state(self) -> dict:
        return {"replicas": [it.get_state() for it in self.iterators]}

    def set_state(self, state: dict) -> None:
        for it, s in zip(self.iterators, state["replicas"], strict=True):
            it.set_state(s)


def make_iterator(config: ml_collections.ConfigDict, datasets):
    """The run's training iterator: one stream, or one per replica (`replica_data`)."""
    kwargs = {"process_index": jax.process_index(), "process_count": jax.process_count()}
    if config.num_replicas > 1 and config.replica_data == "per_replica":
        iterators = []
        for seed in replica_seeds(config):
            own = config.copy_and_resolve_references()
            own.seed = seed
            iterators.append(pipeline.make_train_iterator(own, datasets, **kwargs))
        return ReplicaIterators(iterators)
    return pipeline.make_train_iterator(config, datasets, **kwargs)


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or Inf; training stopped before saving that state."""


def data_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Where TFDS datasets are built: `data.data_dir`, else `<workdir>/tfds`."""
    return config.data.data_dir or os.path.join(workdir, "tfds")


def _flat(config: ml_collections.ConfigDict) -> dict:
    out = {}

    def walk(prefix, node):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict | ml_collections.ConfigDict):
                walk(name + ".", value)
            else:
                out[name] = value

    walk("", json.loads(config.to_json_best_effort()))
    return out


def write_json(path: str, payload) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def check_and_record_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuse to resume when a RESUME_KEYS value differs from the workdir's `config.json`;
    otherwise log the other differences and record the resolved config."""
    path = os.path.join(workdir, "config.json")
    new = _flat(config)
    if os.path.exists(path):
        with open(path) as f:
            saved = _flat(ml_collections.ConfigDict(json.load(f)))
        for key in RESUME_KEYS:
            if saved.get(key) != new.get(key):
                raise ValueError(
                    f"{workdir} holds a run with {key}={saved.get(key)!r}; this config has "
                    f"{key}={new.get(key)!r}, which changes the checkpoint shapes. Use a new "
                    f"--workdir or the same {key}."
                )
        changed = sorted(k for k in set(saved) | set(new) if saved.get(k) != new.get(k))
        if changed:
            logging.warning("Resuming with changed config keys: %s", ", ".join(changed))
    write_json(path, json.loads(config.to_json_best_effort()))


class Setup:
    """Everything a run builds before its first step (shared by train and evaluate)."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config = config
        self.variant = get_variant(config.variant)
        self.datasets = pipeline.build_datasets(config, data_dir(config, workdir))
        self.steps_per_epoch = pipeline.steps_per_epoch(config, self.datasets)
        self.hp = make_hparams(config, self.steps_per_epoch)
        self.nets: Networks = build_networks(
            config.model, self.variant.use_dimg_cls, config.identity.version
        )
        identity = identity_weights.identity_params_for(config, self.nets, workdir)
        self.num_replicas = int(config.num_replicas)
        if self.num_replicas < 1:
            raise ValueError(f"num_replicas={config.num_replicas} must be >= 1")
        if config.replica_data not in REPLICA_DATA:
            raise ValueError(
                f"replica_data={config.replica_data!r} is unknown; allowed: {REPLICA_DATA}"
            )
        if self.num_replicas > 1:
            self.initial_state = init_replicas(
                self.nets, replica_seeds(config), self.hp.b1, self.hp.b2, identity
            )
        else:
            self.initial_state = init_state(
                self.nets, config.seed, self.hp.b1, self.hp.b2, identity_params=identity
            )
        self.checkpoints = Checkpoints(workdir, config.train.keep_checkpoints)
        self.judging = JudgeContext(config, self.datasets)  # Built on the first evaluation.


def _first_non_finite(history: list[tuple[int, dict]]) -> tuple[int, str, float] | None:
    """(step, metric name, value) of the first NaN/Inf in the history, else None."""
    for step, metrics in history:
        for name in sorted(metrics):
            values = np.asarray(metrics[name], np.float64).ravel()
            bad = values[~np.isfinite(values)]
            if bad.size:
                return step, name, float(bad[0])
    return None


def _to_python(value):
    """A scalar metric as float; a per-replica [S] metric as a list."""
    value = np.asarray(value)
    return float(value) if value.ndim == 0 else value.tolist()


def write_samples(
    nets: Networks, state: TrainState, arrays: dict, class_names, folder: str, seed: int
) -> dict[str, np.ndarray]:
    """Sample figures from the held-out faces; returns the image grids for TensorBoard.

    expressions.png: inputs x every target expression; intensity_sweep.png: one subject, every
    expression at rising intensity; prior_faces.png: new identities from z with every expression.
    """
    os.makedirs(folder, exist_ok=True)
    k = nets.num_classes
    # One face per class (or the first faces) so the grid shows different inputs.
    picks = [int(np.flatnonzero(arrays["y"] == c)[0]) for c in range(k) if np.any(arrays["y"] == c)]
    inputs = arrays["x"][np.asarray(picks[:8] or [0])]
    g = state.g.params
    grid = np.asarray(
        synthesis.render_expressions(
            nets.generator, g, inputs, k, off_value=nets.inference_off_value
        )
    )
    sweep = np.asarray(
        synthesis.intensity_sweep(
            nets.generator,
            g,
            inputs[:1],
            k,
            np.asarray(SWEEP_INTENSITIES),
            off_value=nets.inference_off_value,
        )
    )
    prior = np.asarray(
        synthesis.prior_faces(
            nets.generator,
            g,
            jax.random.PRNGKey(seed),
            4,
            k,
            nets.latent_dim,
            off_value=nets.inference_off_value,
        )
    )
    figures.plot_expression_grid(os.path.join(folder, "expressions.png"), inputs, grid, class_names)
    figures.plot_intensity_sweep(
        os.path.join(folder, "intensity_sweep.png"), sweep, class_names, SWEEP_INTENSITIES
    )
    figures.plot_prior_faces(os.path.join(folder, "prior_faces.png"), prior, class_names)
    with_inputs = np.concatenate([inputs[:, None], grid], axis=1)
    return {
        "expressions": figures.image_grid(with_inputs),
        "intensity_sweep": figures.image_grid(sweep),
        "prior_faces": figures.image_grid(prior),
    }


def _evaluate_and_report(setup: Setup, state: TrainState, arrays, writer, step, workdir):
    """Held-out metrics (of every replica), written to the writer; samples from replica 0."""
    if setup.num_replicas > 1:
        per_replica = [
            evaluation.evaluate(
                setup.nets, replica(state, i), arrays, with_dimg_cls=setup.variant.use_dimg_cls
            )[0]
            for i in range(setup.num_replicas)
        ]
        state = replica(state, 0)
        metrics = dict(per_replica[0])
        metrics["replica_accuracy"] = [m["accuracy"] for m in per_replica]
        metrics["mean_accuracy"] = float(np.mean(metrics["replica_accuracy"]))
        scalars = {
            f"eval/replica{i}/{k}": v for i, m in enumerate(per_replica) for k, v in m.items()
        }
    else:
        metrics, _ = evaluation.evaluate(
            setup.nets, state, arrays, with_dimg_cls=setup.variant.use_dimg_cls
        )
        scalars = {f"eval/{k}": v for k, v in metrics.items()}
    g_params = state.g.params if setup.variant.use_gan else None
    judged = setup.judging.metrics(setup.nets, g_params, arrays)
    metrics.update(judged)
    scalars.update({f"eval/{k}": v for k, v in judged.items() if isinstance(v, float)})
    writer.write_scalars(step, scalars)
    if setup.variant.use_gan:
        grids = write_samples(
            setup.nets,
            state,
            arrays,
            setup.datasets.class_names,
            os.path.join(workdir, "samples"),
            setup.config.seed,
        )
        writer.write_images(step, {f"samples/{k}": v[None] for k, v in grids.items()})
    return metrics


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, stop_after: int | None = None
) -> dict:
    """Train (resuming from `workdir` when it has a checkpoint); returns the summary dict.

    `stop_after` ends the run early after that many total steps, with a checkpoint, as a
    preemption would (the schedule still runs to P_max when the run is resumed).
    """
    start_time = time.time()
    os.makedirs(workdir, exist_ok=True)
    check_and_record_config(config, workdir)
    setup = Setup(config, workdir)
    hp, nets = setup.hp, setup.nets
    is_main = jax.process_index() == 0
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
    devices = select_devices(config.train.num_devices, config.train.batch_size)
    runner = DataParallelStep(
        nets,
        hp,
        devices,
        config.train.parallel,
        num_replicas=setup.num_replicas if setup.num_replicas > 1 else 0,
        per_replica_data=config.replica_data == "per_replica",
    )
    iterator = make_iterator(config, setup.datasets)
    host_state = setup.initial_state
    restored = setup.checkpoints.restore(host_state)
    if restored is not None:
        host_state, data_state = restored
        iterator.set_state(data_state)
    first_step = int(host_state.step)
    if first_step == 0:
        parameter_overview.log_parameter_overview(
            {'G': host_state.g.params, 'Dimg': host_state.dimg.params, 'Dz': host_state.dz.params,
             'R': host_state.r.params, 'LightCNN (frozen)': host_state.identity}
        )  # fmt: skip
        writer.write_hparams({k: v for k, v in _flat(config).items() if v is not None})
    logging.info(
        'Variant %s: %d steps (%d in stage 1), %d steps/epoch, %d devices (%s).',
        config.variant, hp.total_steps, hp.pre_steps, setup.steps_per_epoch, len(devices),
        config.train.parallel,
    )  # fmt: skip
    arrays = pipeline.eval_arrays(setup.datasets, "test")
    hooks = []
    if is_main:
        hooks.append(
            periodic_actions.ReportProgress(
                num_train_steps=hp.total_steps, writer=writer, every_steps=config.train.log_every
            )
        )
        if config.train.profile:
            hooks.append(periodic_actions.Profile(logdir=workdir, num_profile_steps=5))

    state = runner.place_state(host_state)
    pending: list[tuple[int, dict]] = []
    last_metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}

    def flush(step: int) -> None:
        """Pull the metrics since the last flush (the only host sync of the loop), stop on a
        non-finite loss, and write their interval averages."""
        nonlocal last_metrics
        if not pending:
            return
        history = jax.device_get(pending)
        pending.clear()
        bad = _first_non_finite(history)
        if bad is not None:
            setup.checkpoints.wait()
            raise NonFiniteLossError(
                f"Non-finite loss: {bad[1]} = {bad[2]} at step {bad[0]}. Training stopped; "
                f"the latest checkpoint (step {setup.checkpoints.latest_step()}) is the last "
                "good state."
            )
        averages = {}
        for name in history[0][1]:
            avg = clu_metrics.Average.from_model_output(np.asarray([m[name] for _, m in history]))
            averages[f"train/{name}"] = float(avg.compute())
        writer.write_scalars(step, averages)
        last_metrics = {k: _to_python(v) for k, v in history[-1][1].items()}

    every = lambda n, step: n > 0 and step % n == 0
    for step in range(first_step, hp.total_steps):
        batch = next(iterator)
        state, metrics = runner(state, runner.place_batch(batch))
        pending.append((step, metrics))
        done = step + 1
        for hook in hooks:
            hook(done)
        last = done == hp.total_steps
        stopping = done == stop_after
        evaluate_now = last or every(config.train.eval_every, done)
        save_now = last or stopping or every(config.train.checkpoint_every, done)
        if last or evaluate_now or save_now or every(config.train.log_every, done):
            flush(done)
        if evaluate_now or save_now:
            host_state = runner.host_state(state)
        if evaluate_now:
            eval_metrics = _evaluate_and_report(setup, host_state, arrays, writer, done, workdir)
            logging.info("Step %d: held-out %s", done, eval_metrics)
        if save_now:
            setup.checkpoints.save(
                done,
                host_state,
                iterator.get_state(),
                eval_metrics.get("accuracy") if evaluate_now else None,
            )
        if stopping:
            break
    setup.checkpoints.wait()
    if stop_after is not None and stop_after < hp.total_steps:
        setup.checkpoints.close()
        return {"stopped_at": stop_after, "train_last_step": last_metrics}
    writer.flush()
    if not eval_metrics:  # Nothing left to train: evaluate the restored state.
        host_state = runner.host_state(state)
        eval_metrics = _evaluate_and_report(
            setup, host_state, arrays, writer, hp.total_steps, workdir
        )
    summary = {
        "config": config.get("name", ""),
        "variant": config.variant,
        "steps": hp.total_steps,
        "stage1_steps": hp.pre_steps,
        "resumed_from_step": first_step,
        "wall_time_s": round(time.time() - start_time, 2),
        "eval": eval_metrics,
        "train_last_step": last_metrics,
        "workdir": os.path.abspath(workdir),
        "environment": determinism.environment_record(),
    }
    if is_main:
        write_json(os.path.join(workdir, "summary.json"), summary)
    setup.checkpoints.close()
    return summary


def evaluate_checkpoint(
    config: ml_collections.ConfigDict, workdir: str, step: int | None = None, best: bool = False
) -> dict:
    """Evaluate a saved state (latest, `step`, or best); writes summary.json and samples."""
    start_time = time.time()
    setup = Setup(config, workdir)
    restored = setup.checkpoints.restore(setup.initial_state, step=step, best=best)
    if restored is None:
        raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints (or /best) to evaluate.")
    state = restored[0]
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    arrays = pipeline.eval_arrays(setup.datasets, "test")
    metrics = _evaluate_and_report(setup, state, arrays, writer, int(state.step), workdir)
    writer.flush()
    summary = {
        "config": config.get("name", ""),
        "variant": config.variant,
        "steps": int(state.step),
        "wall_time_s": round(time.time() - start_time, 2),
        "eval": metrics,
        "workdir": os.path.abspath(workdir),
    }
    write_json(os.path.join(workdir, "summary.json"), summary)
    setup.checkpoints.close()
    return summary
