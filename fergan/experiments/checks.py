"""Validation of a whole resolved run before it writes anything.

`check_run` raises ValueError / FileNotFoundError with one line naming the key, file or value;
it reads the config, the workdir and the data folder, and creates nothing: a mistyped command
leaves no trace behind.
"""

from __future__ import annotations

import json
import os

import ml_collections

from fergan import checkpointing, determinism, methods
from fergan.data import pipeline
from fergan.evaluation import judge
from fergan.identity import weights as identity_weights
from fergan.training import cpu_workarounds, parallel

# Keys whose change alters the meaning of any method's checkpoint (a method adds its own,
# `Method.resume_keys`): a run refuses to resume, evaluate or synthesize across them.
RESUME_KEYS = ("method", "variant")
# Values of resume keys that workdirs written before the key existed ran with (a method adds its
# own, `Method.resume_defaults`): runs from before config.method existed are FESR runs.
RESUME_DEFAULTS = {"method": "fesr"}
REPLICA_DATA = ("shared", "per_replica")
CONFIG_FILE = "config.json"


def flat_config(config: ml_collections.ConfigDict | dict) -> dict:
    """{'a.b.c': value} of a (nested) config, as JSON would store it."""
    if isinstance(config, ml_collections.ConfigDict):
        config = json.loads(config.to_json_best_effort())
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in flat_config(value).items()})
        else:
            out[key] = value
    return out


def check_config(config: ml_collections.ConfigDict) -> None:
    """Every config key that can be checked without data, each error naming its key."""
    method = methods.of(config)
    method.variant(config.variant)
    if method.check_config:
        method.check_config(config)
    if config.model.image_size not in (32, 64, 128):
        raise ValueError(f"model.image_size={config.model.image_size} must be 32, 64 or 128.")
    if int(config.identity.version) not in (1, 2):
        raise ValueError(f"identity.version={config.identity.version} must be 1 or 2.")
    batch = int(config.train.batch_size)
    if batch < 1:
        raise ValueError(f"train.batch_size={config.train.batch_size} must be >= 1.")
    parallel.select_devices(config.train.num_devices, batch)
    if config.train.parallel not in parallel.PARALLEL_MODES:
        raise ValueError(
            f"train.parallel={config.train.parallel!r} is unknown; allowed: "
            f"{', '.join(parallel.PARALLEL_MODES)}."
        )
    cpu_workarounds.vmap_replicas(config.get("replica_batching", "auto"), "cpu")
    cpu_workarounds.gate_by_select(config.train.get("gating", "auto"), "cpu")
    if int(config.num_replicas) < 1:
        raise ValueError(f"num_replicas={config.num_replicas} must be >= 1.")
    if config.replica_data not in REPLICA_DATA:
        raise ValueError(
            f"replica_data={config.replica_data!r} is unknown; allowed: {', '.join(REPLICA_DATA)}."
        )
    for key in ("log_every", "eval_every", "checkpoint_every"):
        if int(config.train[key]) < 0:
            raise ValueError(f"train.{key}={config.train[key]} must be >= 0.")
    if int(config.train.keep_checkpoints) < 1:
        raise ValueError(f"train.keep_checkpoints={config.train.keep_checkpoints} must be >= 1.")
    judge.judge_kind(config)
    if not float(config.optim.learning_rate) > 0:
        raise ValueError(f"optim.learning_rate={config.optim.learning_rate} must be > 0.")
    determinism.check_cpu_isa(config.determinism.cpu_isa)


def saved_config(workdir: str) -> dict | None:
    """The flat `config.json` of a workdir, or None when it has none."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return flat_config(json.load(f))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is unreadable ({e}); use a new --workdir.") from e


def resume_keys(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The shared resume keys and those of the config's method."""
    return RESUME_KEYS + tuple(methods.of(config).resume_keys)


def check_same_shapes(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuse a config that differs from the workdir's checkpointed run in a RESUME_KEYS key."""
    saved = saved_config(workdir)
    if saved is None:
        return
    new = flat_config(config)
    new.setdefault("method", RESUME_DEFAULTS["method"])
    defaults = RESUME_DEFAULTS | dict(methods.of(config).resume_defaults)
    for key in resume_keys(config):
        old = saved.get(key, defaults.get(key))
        if old != new.get(key):
            raise ValueError(
                f"{workdir} holds a run with {key}={old!r}; this config has "
                f"{key}={new.get(key)!r}, which changes the checkpoint shapes. Use a new "
                f"--workdir or the same {key}."
            )


def check_workdir(
    config: ml_collections.ConfigDict,
    workdir: str,
    mode: str,
    step: int | None = None,
    best: bool = False,
) -> None:
    """The workdir suits the mode: train resumes only a run of the same shapes; evaluate and
    synthesize need an existing checkpoint (`step`, the best, or the latest) of such a run."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir={workdir} is a file, not a folder.")
    steps = checkpointing.saved_steps(workdir, best=best)
    if mode in ("evaluate", "synthesize"):
        where = os.path.join(workdir, "best" if best else "checkpoints")
        if not steps:
            raise FileNotFoundError(f"--workdir={workdir}: no checkpoint in {where} to {mode}.")
        if step is not None and step not in steps:
            raise FileNotFoundError(
                f"--step={step}: no such checkpoint in {where} (saved: "
                f"{', '.join(map(str, steps))})."
            )
    if steps or checkpointing.saved_steps(workdir, best=not best):
        check_same_shapes(config, workdir)


def check_run(
    config: ml_collections.ConfigDict,
    workdir: str,
    mode: str,
    *,
    step: int | None = None,
    best: bool = False,
) -> None:
    """Everything about a run that can be checked before it writes: config keys, data, workdir,
    identity weights. Raises ValueError / FileNotFoundError naming the key, file or value."""
    check_config(config)
    if config.identity.weights and methods.of(config).has_identity_network:
        identity_weights.resolve_weights_path(config.identity.weights, workdir)
    check_workdir(config, workdir, mode, step, best)
    pipeline.check_data(config)
