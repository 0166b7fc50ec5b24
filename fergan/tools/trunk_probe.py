"""How much expression does R's trunk keep? The evaluation's linear probe on pixels and on trunks.

Usage:
  python -m fergan.tools.trunk_probe --config configs/demo.py --workdir runs/demo
      [--weights PATH,...] [--runs RUN,...] [--seeds 0,1]

On the configured fold (data from `data.data_dir`, else `<workdir>/tfds`, built when missing) the
probe of `eval.linear_probe_accuracy` (standardised features, then a logistic regression) is
fitted on the training faces and tested on the test faces, with as its features:
  - the pixels (what `eval.linear_probe_accuracy` reports);
  - the LightCNN trunk (conv1..pool3, the input of R's head) with untrained parameters from each
    of --seeds (init keys as `jax.random.PRNGKey(seed)`);
  - the trunk with each identity-weights folder of --weights (`identity.weights` format);
  - every trunk a run of --runs trains (FESR's R with `recognizer.trunk` 'finetune'), from its
    latest checkpoint: each parameter subtree with the trunk's layers, its path named.
A trunk far below the pixels loses expression on the way to R's head, so R must re-learn it
(`recognizer.trunk` 'finetune') before it can match the pixel probe.

Prints a table, then the same results as one JSON line. Exit status 0; 2 on a bad flag, a
missing weights folder, a run of another data split or trunk size, or a config the data cannot
be built from (all checked before <workdir>/tfds is written).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from fergan import console
from fergan.data.pipeline import build_datasets, check_data, data_dir, eval_arrays
from fergan.evaluation.edit_metrics import linear_probe_accuracy
from fergan.identity.features import trunk_outputs
from fergan.identity.network import identity_network
from fergan.identity.weights import load_identity_params
from fergan.models import LightCNN29
from fergan.tools import cli, compare_runs


def define_flags(flag_values: flags.FlagValues) -> None:
    config_flags.DEFINE_config_file(
        "config", None, "Config file (configs/<name>.py[:arg]).", flag_values=flag_values
    )
    flags.DEFINE_string(
        "workdir", None, "Where <workdir>/tfds is (unless data.data_dir).", flag_values=flag_values
    )
    flags.DEFINE_list("weights", [], "Identity-weights folders to probe.", flag_values=flag_values)
    flags.DEFINE_list(
        "runs", [], "Run folders whose trained trunks to probe.", flag_values=flag_values
    )
    flags.DEFINE_list("seeds", ["0", "1"], "Seeds of untrained trunks.", flag_values=flag_values)


def untrained_trunk(model: LightCNN29, seed: int, image_size: int):
    """Trunk parameters (conv1..pool3) of `model` drawn from `jax.random.PRNGKey(seed)`."""
    x = jnp.zeros((1, image_size, image_size, 1))
    return model.init(jax.random.PRNGKey(seed), x, method=LightCNN29.trunk)["params"]


def trained_trunks(state: dict, trunk_keys: set[str], path: str = "") -> dict[str, dict]:
    """Every subtree of a checkpointed `state` (nested dicts) under a 'params' key whose keys
    are the trunk's layers `trunk_keys`, by its '/'-joined path (optimizer moments, which have
    the same layout, are not parameters and are skipped)."""
    found = {}
    for key, value in state.items():
        here = f"{path}/{key}" if path else str(key)
        if not isinstance(value, dict):
            continue
        if set(value) == trunk_keys and "params" in here.split("/"):
            found[here] = value
        else:
            found.update(trained_trunks(value, trunk_keys, here))
    return found


def probe_table(train: dict, test: dict, trunks: dict, model: LightCNN29) -> list[dict]:
    """One row per feature set: the pixels, then each trunk of `trunks` ({name: params}).

    Args:
      train, test: `eval_arrays` of the fold ('x' [N, S, S, c] in [-1, 1], 'y' [N]).
      trunks: trunk (or whole LightCNN29) parameter trees by name.

    Returns:
      [{'features': name, 'dims': feature size, 'accuracy': held-out probe accuracy}].
    """
    rows = [("pixels", train["x"], test["x"])]
    for name, params in trunks.items():
        outputs = [trunk_outputs(model, params, split["x"]) for split in (train, test)]
        rows.append((name, *outputs))
    return [
        {
            "features": name,
            "dims": int(np.prod(a.shape[1:])),
            "accuracy": linear_probe_accuracy(a, train["y"], b, test["y"]),
        }
        for name, a, b in rows
    ]


# The run's data keys that must equal the config's, or its trunk is probed on faces it trained on;
# with the synthetic set's render seed, 'render seed' in `_data_keys`.
_RUN_DATA_KEYS = ("name", "num_subjects", "num_folds", "fold", "fold_seed")


def _data_keys(config: dict) -> dict:
    """`_RUN_DATA_KEYS` of a config (as a dict) and its 'render seed' (data.synthetic_seed, or
    the run's seed when that is -1)."""
    data = config["data"]
    render = data.get("synthetic_seed", -1)
    keys = {k: data[k] for k in _RUN_DATA_KEYS if k in data}
    return keys | {"render seed": render if render >= 0 else config["seed"]}


def _run_trunks(run: str, config, reference) -> dict[str, dict]:
    """The trained trunks of `run`'s latest checkpoint by name; ValueError when there is none,
    when one does not fit `reference` (the config's trunk) or the run's data split is another."""
    with open(os.path.join(run, "config.json")) as f:
        theirs = _data_keys(json.load(f))
    ours = _data_keys(config.to_dict())
    for key in theirs:
        if theirs[key] != ours.get(key):  # Keys older configs lack: not checked.
            raise ValueError(f"--runs: {run} has {key} {theirs[key]!r}, the config {ours[key]!r}")
    step, checkpoint = compare_runs.restore_raw(run)
    found = trained_trunks(checkpoint["state"], set(reference))
    if not found:
        raise ValueError(f"--runs: {run} (step {step}) has no trained trunk")
    shape = lambda tree: jax.tree.map(np.shape, tree)
    for path, tree in found.items():
        if shape(tree) != shape(reference):
            raise ValueError(
                f"--runs: {run}: {path} does not fit the config's LightCNN trunk "
                f"(model.width={config.model.width}, model.image_size={config.model.image_size})"
            )
    return {f"trunk, {run} step {step}: {k}": v for k, v in found.items()}


def main(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> int:
    if len(argv) > 1:
        return cli.error(f"unexpected arguments: {' '.join(argv[1:])}")
    config = flag_values.config
    if config is None or flag_values.workdir is None:
        return cli.error("--config and --workdir are both required")
    try:
        seeds = [int(s) for s in flag_values.seeds]
    except ValueError:
        return cli.error(f"--seeds={','.join(flag_values.seeds)} must be integers")
    for flag in ("weights", "runs"):
        missing = [p for p in flag_values[flag].value if not os.path.isdir(p)]
        if missing:
            return cli.error(f"--{flag}: {missing[0]} is not a folder")
    console.quiet_libraries()
    logging.set_verbosity(logging.ERROR)  # TFDS' custom-config notice; the table is the output.
    try:
        check_data(config)  # Everything about the data, before <workdir>/tfds is written.
        model, size = identity_network(config), int(config.model.image_size)
        reference = untrained_trunk(model, 0, size)
        trunks = {f"trunk, untrained (seed {s})": untrained_trunk(model, s, size) for s in seeds}
        for path in flag_values.weights:
            trunks[f"trunk, {path}"] = load_identity_params(path, model, size)
        for run in flag_values.runs:
            trunks.update(_run_trunks(run, config, reference))
        datasets = build_datasets(config, data_dir(config, flag_values.workdir))
    except (ValueError, OSError, compare_runs.MissingRunError) as e:
        return cli.error(str(e))
    train, test = eval_arrays(datasets, "train"), eval_arrays(datasets, "test")
    console.say(f"trunk_probe: {len(train['y'])} training faces, {len(test['y'])} test faces")
    rows = probe_table(train, test, trunks, model)
    print("| features | dims | held-out accuracy (%) |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['features']} | {row['dims']} | {100 * row['accuracy']:.1f} |")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    cli.run(main, define_flags)
