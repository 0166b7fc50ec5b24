"""The training program of every method: data, the method's model, the jitted iteration,
logging, evaluation, checkpoints.

`train_and_evaluate(config, workdir)` runs (or resumes) one training of `config.method` and
writes TensorBoard events, checkpoints, `summary.json` and sample figures into `workdir`.
"""

import functools
import json
import os
import time

import jax
import ml_collections
import numpy as np
from clu import metric_writers, parameter_overview, periodic_actions
from clu import metrics as clu_metrics

from fergan import console, determinism, methods
from fergan.checkpointing import Checkpoints
from fergan.data import pipeline
from fergan.evaluation import heldout
from fergan.evaluation.judge import JudgeContext
from fergan.experiments import checks
from fergan.files import write_json
from fergan.identity import weights as identity_weights
from fergan.processes import wait_for_processes
from fergan.training import cpu_workarounds, replicas
from fergan.training.parallel import data_parallel_step, select_devices
from fergan.types import NonFiniteLossError


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
    """Everything a run builds before its first step (shared by train, evaluate, CV and
    synthesize): the method, the data, the model, the initial state, checkpoints, the judge."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config = config
        self.method = methods.of(config)
        self.datasets = pipeline.build_datasets(config, pipeline.data_dir(config, workdir))
        self.steps_per_epoch = pipeline.steps_per_epoch(config, self.datasets)
        self.model = self.method.build(config, self.steps_per_epoch)
        if self.method.attach_data:
            self.model = self.method.attach_data(self.model, config, self.datasets)
        identity = (
            identity_weights.identity_params_for(config, workdir)
            if self.method.has_identity_network
            else None
        )
        init = functools.partial(self.method.init_state, self.model, identity_params=identity)
        self.num_replicas = int(config.num_replicas)
        if self.num_replicas > 1:
            self.initial_state = replicas.init_replicas(init, replicas.replica_seeds(config))
        else:
            self.initial_state = init(config.seed)
        self.checkpoints = Checkpoints(workdir, config.train.keep_checkpoints)
        self.judging = JudgeContext(config, self.datasets)  # Built on the first evaluation.

    def held_out(self, state, arrays: dict) -> tuple[dict, dict]:
        """(metrics, per-example outputs) of one single-run state on `arrays` (x, y)."""
        outputs_of = functools.partial(self.method.evaluate_batch, self.model, state)
        return heldout.evaluate(outputs_of, arrays)

    def editor(self, state):
        """The method's renderer for `state`, or None (no generator)."""
        return self.method.editor(self.model, state) if self.method.editor else None

    def edit_sources(self, test: dict) -> dict:
        """The faces edits start from: the held-out `test` arrays, or for a method that edits
        neutral faces the held-out subjects' neutral faces, y = -1 (every class a target)."""
        if not self.method.edits_from_neutral:
            return test
        return pipeline.eval_arrays(self.datasets, "test_neutral") | {
            "y": np.full(len(self.datasets.test_neutral), -1, np.int32)
        }

    def judge_metrics(self, state, test: dict) -> dict:
        """The judge's metrics of `state`'s editor, and the method's own `extra_metrics`."""
        sources = self.edit_sources(test)
        out = self.judging.metrics(
            self.editor(state), test, self.method.edits_intensity, sources=sources
        )
        if self.method.extra_metrics:
            out |= self.method.extra_metrics(self.model, state, sources)
        return out


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


def _evaluate_and_report(setup: Setup, state, arrays, writer, step, samples_dir):
    """Held-out metrics (of every replica), written to the writer; samples from replica 0 into
    `samples_dir`."""
    if setup.num_replicas > 1:
        per_replica = [
            setup.held_out(replicas.replica(state, i), arrays)[0] for i in range(setup.num_replicas)
        ]
        state = replicas.replica(state, 0)
        metrics = dict(per_replica[0])
        metrics["replica_accuracy"] = [m["accuracy"] for m in per_replica]
        metrics["mean_accuracy"] = float(np.mean(metrics["replica_accuracy"]))
        scalars = {
            f"eval/replica{i}/{k}": v for i, m in enumerate(per_replica) for k, v in m.items()
        }
    else:
        metrics, _ = setup.held_out(state, arrays)
        scalars = {f"eval/{k}": v for k, v in metrics.items()}
    judged = setup.judge_metrics(state, arrays)
    metrics.update(judged)
    scalars.update({f"eval/{k}": v for k, v in judged.items() if isinstance(v, float)})
    writer.write_scalars(step, scalars)
    if setup.method.write_samples:
        grids = setup.method.write_samples(
            setup.model,
            state,
            setup.edit_sources(arrays),
            setup.datasets.class_names,
            samples_dir,
            setup.config.seed,
        )
        if grids:
            writer.write_images(step, {f"samples/{k}": v[None] for k, v in grids.items()})
    wait_for_processes("evaluated")  # The first process wrote the samples alone.
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
    if "rec_error" in metrics:
        parts.append(f"rec L1 {metrics['rec_error']:.3f}")
    if metrics.get("linear_probe_accuracy") is not None:
        parts.append(f"pixel probe {100 * metrics['linear_probe_accuracy']:.1f}%")
    if metrics.get("edit_accuracy") is not None:
        parts.append(
            f"judge: edits {100 * metrics['edit_accuracy']:.1f}% of "
            f"{100 * metrics['judge_accuracy_real']:.1f}% on real faces"
        )
    if metrics.get("intensity_spearman") is not None:
        parts.append(f"intensity rho {metrics['intensity_spearman']:.2f}")
    return f"eval step {step}/{total}: " + ", ".join(parts)


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
    data, model = setup.datasets, setup.model
    return [
        f"data: {data.name} fold {config.data.fold + 1}/{config.data.num_folds}: "
        f"{len(data.train)} training frames of {data.num_train_subjects} subjects, "
        f"{len(data.test)} test faces of {data.num_test_subjects} subjects, "
        f"{data.num_classes} classes ({data.data_dir})",
        f"schedule: {model.total_steps} steps ({model.pre_steps} in stage 1), "
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
    model = setup.model
    is_main = jax.process_index() == 0
    devices = select_devices(config.train.num_devices, config.train.batch_size)
    # One compiled iteration per stage (or one for the run); the host's step picks it.
    runners = [
        (
            first,
            end,
            data_parallel_step(
                body,
                devices,
                config.train.parallel,
                num_replicas=setup.num_replicas if setup.num_replicas > 1 else 0,
                per_replica_data=config.replica_data == "per_replica",
                vmap_replicas=cpu_workarounds.vmap_replicas(
                    config.get("replica_batching", "auto"), jax.default_backend()
                ),
            ),
        )
        for first, end, body in setup.method.iterations(model)
    ]
    runner = runners[0][2]  # Any of them places and fetches state and batches.
    stage_runner = lambda step: next(r for first, end, r in runners if first <= step < end)
    iterator = replicas.make_iterator(
        config, setup.datasets, features=setup.method.features(config)
    )
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
        parameter_overview.log_parameter_overview(setup.method.parameters(host_state))
        writer.write_hparams({k: v for k, v in checks.flat_config(config).items() if v is not None})
    arrays = pipeline.eval_arrays(setup.datasets, "test")
    hooks = []
    if is_main:
        hooks.append(
            periodic_actions.ReportProgress(
                num_train_steps=model.total_steps, writer=writer, every_steps=config.train.log_every
            )
        )
        if config.train.profile:
            hooks.append(periodic_actions.Profile(logdir=workdir, num_profile_steps=5))

    state = runner.place_state(host_state)
    history = MetricHistory()
    eval_metrics: dict[str, float] = {}
    samples_dir = os.path.join(workdir, "samples")
    every = lambda n, step: n > 0 and step % n == 0
    wait_for_processes("train")  # Start-up work differs between processes (is_main).
    if first_step < model.total_steps:
        console.say("compiling the training step ...")
    with console.progress("train", model.total_steps, initial=first_step) as bar:
        for step in range(first_step, model.total_steps):
            batch = next(iterator)
            state, metrics = stage_runner(step)(state, runner.place_batch(batch))
            history.add(step, metrics)
            done = step + 1
            for hook in hooks:
                hook(done)
            bar.update(done)
            last = done == model.total_steps
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
                        for name, short in setup.method.progress_metrics.items()
                        if name in history.last
                    }
                )
            if evaluate_now or save_now:
                host_state = runner.host_state(state)
            if evaluate_now:
                eval_metrics = _evaluate_and_report(
                    setup, host_state, arrays, writer, done, samples_dir
                )
                console.say(
                    eval_line(done, model.total_steps, eval_metrics, setup.model.num_classes)
                )
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
    if stop_after is not None and stop_after < model.total_steps:
        setup.checkpoints.close()
        return {"stopped_at": stop_after, "train_last_step": history.last}
    writer.flush()
    if not eval_metrics:  # Nothing left to train: evaluate the restored state.
        host_state = runner.host_state(state)
        eval_metrics = _evaluate_and_report(
            setup, host_state, arrays, writer, model.total_steps, samples_dir
        )
    summary = {
        "config": config.get("name", ""),
        "method": setup.method.name,
        "variant": config.variant,
        "steps": model.total_steps,
        "stage1_steps": model.pre_steps,
        "resumed_from_step": first_step,
        "wall_time_s": round(time.time() - start_time, 2),
        "eval": eval_metrics,
        "chance_accuracy": 1.0 / setup.model.num_classes,
        "train_last_step": history.last,
        "workdir": os.path.abspath(workdir),
        "environment": determinism.environment_record(),
    }
    if is_main:
        write_json(os.path.join(workdir, "summary.json"), summary)
    setup.checkpoints.close()
    wait_for_processes("finished")  # Leave together: shutdown's own barrier is short.
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
    console.say(eval_line(int(state.step), int(state.step), metrics, setup.model.num_classes))
    summary = {
        "config": config.get("name", ""),
        "method": setup.method.name,
        "variant": config.variant,
        "steps": int(state.step),
        "checkpoint": "best" if best else "latest" if step is None else "step",
        "wall_time_s": round(time.time() - start_time, 2),
        "eval": metrics,
        "chance_accuracy": 1.0 / setup.model.num_classes,
        "workdir": os.path.abspath(workdir),
        "samples": samples_dir if os.path.isdir(samples_dir) else None,
        "environment": determinism.environment_record(),
    }
    summary["path"] = os.path.join(folder, f"{tag}.json")
    write_json(summary["path"], summary)
    setup.checkpoints.close()
    return summary
