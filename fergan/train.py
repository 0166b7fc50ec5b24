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
from clu import metric_writers, parameter_overview, periodic_actions
from clu import metrics as clu_metrics

from fergan import checks, console, determinism
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

SWEEP_INTENSITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


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


def write_json(path: str, payload) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def record_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Write the resolved config to `<workdir>/config.json` as training starts; when resuming,
    note the keys that changed (shape keys were refused earlier by `checks.check_workdir`)."""
    saved = checks.saved_config(workdir)
    if saved is not None:
        new = checks.flat_config(config)
        changed = sorted(k for k in set(saved) | set(new) if saved.get(k) != new.get(k))
        if changed:
            console.warn(f"resuming with changed config keys: {', '.join(changed)}")
    write_json(os.path.join(workdir, checks.CONFIG_FILE), json.loads(config.to_json_best_effort()))


class Setup:
    """Everything a run builds before its first step (shared by train and evaluate)."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config = config
        self.variant = get_variant(config.variant)
        self.datasets = pipeline.build_datasets(config, data_dir(config, workdir))
        self.steps_per_epoch = pipeline.steps_per_epoch(config, self.datasets)
        self.hp = make_hparams(config, self.steps_per_epoch)
        self.nets: Networks = build_networks(
            config.model,
            self.variant.use_dimg_cls,
            config.identity.version,
            config.recognizer.trunk,
        )
        identity = identity_weights.identity_params_for(config, self.nets, workdir)
        self.num_replicas = int(config.num_replicas)
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


def _evaluate_and_report(setup: Setup, state: TrainState, arrays, writer, step, samples_dir):
    """Held-out metrics (of every replica), written to the writer; samples from replica 0 into
    `samples_dir`."""
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
            setup.nets, state, arrays, setup.datasets.class_names, samples_dir, setup.config.seed
        )
        writer.write_images(step, {f"samples/{k}": v[None] for k, v in grids.items()})
    return metrics


def eval_line(step: int, total: int, metrics: dict, num_classes: int) -> str:
    """One line describing an evaluation, with the chance level beside the accuracy."""
    parts = [
        f"held-out accuracy {100 * metrics['accuracy']:.1f}% (chance {100 / num_classes:.1f}%, "
        f"{metrics['num_examples']} faces)"
    ]
    if "mean_accuracy" in metrics:
        parts.append(f"replica mean {100 * metrics['mean_accuracy']:.1f}%")
    if "dimg_accuracy" in metrics:
        parts.append(f"Dimg {100 * metrics['dimg_accuracy']:.1f}%")
    parts.append(f"rec L1 {metrics['rec_error']:.3f}")
    if metrics.get("linear_probe_accuracy") is not None:
        parts.append(f"pixel probe {100 * metrics['linear_probe_accuracy']:.1f}%")
    if metrics.get("edit_accuracy") is not None:
        parts.append(
            f"judge: edits {100 * metrics['edit_accuracy']:.1f}% of "
            f"{100 * metrics['judge_accuracy_real']:.1f}% on real faces, intensity rho "
            f"{metrics['intensity_spearman']:.2f}"
        )
    return f"eval step {step}/{total}: " + ", ".join(parts)


# Losses shown beside the progress line (those the variant has).
PROGRESS_METRICS = {
    "stage": "stage",
    "loss/g_total": "G",
    "loss/dimg_total": "Dimg",
    "loss/r_cls": "R",
    "acc/r_real": "R acc",
}


class MetricHistory:
    """The step metrics since the last flush, kept on device so that the loop never waits for
    them; `flush` pulls them in one transfer (the loop's only host sync)."""

    def __init__(self):
        self.pending: list[tuple[int, dict]] = []
        self.last: dict = {}

    def add(self, step: int, metrics: dict) -> None:
        self.pending.append((step, metrics))

    def flush(self) -> dict[str, float]:
        """Interval averages {'train/<name>': value}; raises NonFiniteLossError on a NaN/Inf."""
        if not self.pending:
            return {}
        history = jax.device_get(self.pending)
        self.pending.clear()
        bad = _first_non_finite(history)
        if bad is not None:
            raise NonFiniteLossError(
                f"non-finite loss {bad[1]} = {bad[2]} at step {bad[0]}; training stopped and the "
                "latest checkpoint is the last good state."
            )
        self.last = {k: _to_python(v) for k, v in history[-1][1].items()}
        return {
            f"train/{name}": float(
                clu_metrics.Average.from_model_output(
                    np.asarray([m[name] for _, m in history])
                ).compute()
            )
            for name in history[0][1]
        }


def data_lines(config, setup: Setup) -> list[str]:
    """What a run trains on and for how long (printed once the dataset is ready)."""
    data, hp = setup.datasets, setup.hp
    return [
        f"data: {data.name} fold {config.data.fold + 1}/{config.data.num_folds}: "
        f"{len(data.train)} training frames of {data.num_train_subjects} subjects, "
        f"{len(data.test)} test faces of {data.num_test_subjects} subjects, "
        f"{data.num_classes} classes ({data.data_dir})",
        f"schedule: {hp.total_steps} steps ({hp.pre_steps} in stage 1), "
        f"{setup.steps_per_epoch} steps/epoch, batch {config.train.batch_size}",
    ]


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, stop_after: int | None = None
) -> dict:
    """Train (resuming from `workdir` when it has a checkpoint); returns the summary dict.

    `stop_after` ends the run early after that many total steps, with a checkpoint, as a
    preemption would (the schedule still runs to P_max when the run is resumed).
    """
    start_time = time.time()
    checks.check_run(config, workdir, "train")
    os.makedirs(workdir, exist_ok=True)
    setup = Setup(config, workdir)
    hp = setup.hp
    is_main = jax.process_index() == 0
    devices = select_devices(config.train.num_devices, config.train.batch_size)
    runner = DataParallelStep(
        setup.nets,
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
    for line in data_lines(config, setup):
        console.say(line)
    if first_step:
        console.say(f"resuming from the checkpoint of step {first_step}")
    if is_main:
        record_config(config, workdir)
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
    if first_step == 0:
        parameter_overview.log_parameter_overview(
            {'G': host_state.g.params, 'Dimg': host_state.dimg.params, 'Dz': host_state.dz.params,
             'R': host_state.r.params, 'LightCNN (frozen)': host_state.identity}
        )  # fmt: skip
        writer.write_hparams({k: v for k, v in checks.flat_config(config).items() if v is not None})
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
    history = MetricHistory()
    eval_metrics: dict[str, float] = {}
    samples_dir = os.path.join(workdir, "samples")
    every = lambda n, step: n > 0 and step % n == 0
    if first_step < hp.total_steps:
        console.say("compiling the training step ...")
    with console.progress("train", hp.total_steps, initial=first_step) as bar:
        for step in range(first_step, hp.total_steps):
            batch = next(iterator)
            state, metrics = runner(state, runner.place_batch(batch))
            history.add(step, metrics)
            done = step + 1
            for hook in hooks:
                hook(done)
            bar.update(done)
            last = done == hp.total_steps
            stopping = done == stop_after
            evaluate_now = last or every(config.train.eval_every, done)
            save_now = last or stopping or every(config.train.checkpoint_every, done)
            if last or evaluate_now or save_now or every(config.train.log_every, done):
                try:
                    averages = history.flush()
                except NonFiniteLossError:
                    setup.checkpoints.wait()
                    raise
                writer.write_scalars(done, averages)
                bar.metrics(
                    {
                        short: history.last[name]
                        for name, short in PROGRESS_METRICS.items()
                        if name in history.last
                    }
                )
            if evaluate_now or save_now:
                host_state = runner.host_state(state)
            if evaluate_now:
                eval_metrics = _evaluate_and_report(
                    setup, host_state, arrays, writer, done, samples_dir
                )
                console.say(eval_line(done, hp.total_steps, eval_metrics, setup.nets.num_classes))
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
        return {"stopped_at": stop_after, "train_last_step": history.last}
    writer.flush()
    if not eval_metrics:  # Nothing left to train: evaluate the restored state.
        host_state = runner.host_state(state)
        eval_metrics = _evaluate_and_report(
            setup, host_state, arrays, writer, hp.total_steps, samples_dir
        )
    summary = {
        "config": config.get("name", ""),
        "variant": config.variant,
        "steps": hp.total_steps,
        "stage1_steps": hp.pre_steps,
        "resumed_from_step": first_step,
        "wall_time_s": round(time.time() - start_time, 2),
        "eval": eval_metrics,
        "chance_accuracy": 1.0 / setup.nets.num_classes,
        "train_last_step": history.last,
        "workdir": os.path.abspath(workdir),
        "environment": determinism.environment_record(),
    }
    if is_main:
        write_json(os.path.join(workdir, "summary.json"), summary)
    setup.checkpoints.close()
    return summary


EVALUATIONS_DIR = "evaluations"


def evaluation_tag(step: int, best: bool) -> str:
    """Name of one evaluation's files in `<workdir>/evaluations`: `step_<N>` or `best_step_<N>`."""
    return f"{'best_' if best else ''}step_{step}"


def evaluate_checkpoint(
    config: ml_collections.ConfigDict, workdir: str, step: int | None = None, best: bool = False
) -> dict:
    """Evaluate a saved state (latest, `step`, or best) into `<workdir>/evaluations/<tag>.json`
    and `<tag>_samples/`, beside (never over) the training run's summary and samples."""
    start_time = time.time()
    checks.check_run(config, workdir, "evaluate", step=step, best=best)
    setup = Setup(config, workdir)
    restored = setup.checkpoints.restore(setup.initial_state, step=step, best=best)
    state = restored[0]
    tag = evaluation_tag(int(state.step), best)
    folder = os.path.join(workdir, EVALUATIONS_DIR)
    os.makedirs(folder, exist_ok=True)
    writer = metric_writers.create_default_writer(folder, just_logging=jax.process_index() > 0)
    arrays = pipeline.eval_arrays(setup.datasets, "test")
    samples_dir = os.path.join(folder, f"{tag}_samples")
    metrics = _evaluate_and_report(setup, state, arrays, writer, int(state.step), samples_dir)
    writer.flush()
    console.say(eval_line(int(state.step), int(state.step), metrics, setup.nets.num_classes))
    summary = {
        "config": config.get("name", ""),
        "variant": config.variant,
        "steps": int(state.step),
        "checkpoint": "best" if best else "latest" if step is None else "step",
        "wall_time_s": round(time.time() - start_time, 2),
        "eval": metrics,
        "chance_accuracy": 1.0 / setup.nets.num_classes,
        "workdir": os.path.abspath(workdir),
        "samples": samples_dir if setup.variant.use_gan else None,
        "environment": determinism.environment_record(),
    }
    summary["path"] = os.path.join(folder, f"{tag}.json")
    write_json(summary["path"], summary)
    setup.checkpoints.close()
    return summary
