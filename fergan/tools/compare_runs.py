"""Compare two runs: their checkpointed parameters and the metrics of their summaries.

Usage:
  python -m fergan.tools.compare_runs runs/a runs/b [--step N] [--best]

Restores the latest checkpoint of each run (or step N of both; --best: the best checkpoints)
as a plain tree of arrays, without the config, and reports for each part of the training state
(every network, then step and rng) the largest absolute difference, also over the parameters
alone, the largest difference in ULPs (units in the last place: how many floats lie between
the two values), and whether the two are bit-identical; then the difference of every metric in
the two summary.json files ('eval', 'train_last_step'). When the states differ it also finds
where the runs first part: the first checkpoint step both kept at which they differ, and the
first logged step at which their TensorBoard scalars differ, with the networks and ULPs there.
Rounding (another CPU, another device count) starts as a few ULPs and grows with training; a
real change (seed, data, code) differs from the first step by far more.

Prints a table, then the same report as one JSON line. Exit status 0 whatever the
differences; 2 when a workdir or checkpoint is missing.
"""

from __future__ import annotations

import glob
import json
import math
import os
import struct

import numpy as np
from absl import flags, logging

from fergan.tools import cli

# Parts of every method's state that are not networks: compared last, with no parameters.
COUNTER_KEYS = ("step", "rng")
METRIC_SECTIONS = ("eval", "train_last_step")
# TensorBoard scalars that follow the computation (not wall time such as 'steps_per_sec').
SCALAR_PREFIXES = ("train/", "eval/")
USAGE = "python -m fergan.tools.compare_runs RUN_A RUN_B [--step N] [--best]"


class MissingRunError(Exception):
    """A workdir, its checkpoints or the requested step does not exist."""


def _manager(folder: str):
    import orbax.checkpoint as ocp

    # Restoring without the config: a registry maps each item to a handler that reads raw trees.
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    registry.add("state", ocp.args.PyTreeRestore, ocp.PyTreeCheckpointHandler)
    registry.add("data", ocp.args.JsonRestore, ocp.JsonCheckpointHandler)
    return ocp.CheckpointManager(
        folder, options=ocp.CheckpointManagerOptions(read_only=True), handler_registry=registry
    )


def _checkpoint_folder(workdir: str, best: bool) -> str:
    if not os.path.isdir(workdir):
        raise MissingRunError(f"{workdir}: no such run folder.")
    folder = os.path.abspath(os.path.join(workdir, "best" if best else "checkpoints"))
    if not os.path.isdir(folder):
        raise MissingRunError(f"{workdir}: no checkpoints ({folder} does not exist).")
    return folder


def checkpoint_steps(workdir: str, best: bool = False) -> list[int]:
    """The steps of the complete checkpoints of `workdir` (or of <workdir>/best), ascending."""
    manager = _manager(_checkpoint_folder(workdir, best))
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def restore_raw(workdir: str, step: int | None = None, best: bool = False) -> tuple[int, dict]:
    """(step, {'state': nested dict of numpy arrays, 'data': iterator state}) of a checkpoint of
    `workdir` (latest, `step`, or with `best` the one in <workdir>/best)."""
    import jax
    import orbax.checkpoint as ocp

    folder = _checkpoint_folder(workdir, best)
    manager = _manager(folder)
    try:
        steps = manager.all_steps()
        if not steps:
            raise MissingRunError(f"{workdir}: {folder} holds no complete checkpoint.")
        if step is None:
            step = max(steps)
        elif step not in steps:
            raise MissingRunError(
                f"{workdir}: no checkpoint at step {step}; it has {sorted(steps)}."
            )
        tree = manager.item_metadata(step)["state"].tree
        # numpy leaves: nothing lands on an accelerator, whatever devices wrote the checkpoint.
        as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(restore_args=as_numpy), data=ocp.args.JsonRestore()
            ),
        )
    finally:
        manager.close()
    return step, {"state": restored["state"], "data": restored["data"]}


def _leaves(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten nested dicts/lists into {'a/b/0': array}."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list | tuple):
        items = enumerate(tree)
    else:
        return {prefix: np.asarray(tree)}
    out = {}
    for key, value in items:
        out.update(_leaves(value, f"{prefix}/{key}" if prefix else str(key)))
    return out


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| (NaN in both places counts as equal, NaN in one as infinite)."""
    if a.size == 0:
        return 0.0
    if a.dtype.kind in "iub":
        return float(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64))))
    x, y = a.astype(np.float64), b.astype(np.float64)
    diff = np.abs(x - y)
    diff[np.isnan(x) & np.isnan(y)] = 0.0
    diff[np.isnan(diff)] = np.inf
    return float(np.max(diff))


def max_ulp_diff(a: np.ndarray, b: np.ndarray) -> int:
    """Largest distance between a and b counted in floats representable between them (units in
    the last place; 0 = equal bits or +0/-0; NaNs are left out, _max_abs_diff shows them). 1-2
    ULPs is rounding; a real change is thousands or millions. 0 for non-float arrays."""
    if a.size == 0 or a.dtype.kind != "f":
        return 0
    bits = np.dtype(f"int{8 * a.dtype.itemsize}")

    def ordered(x):
        # IEEE floats of one sign are ordered like their bit patterns; mirror the negatives so
        # that every float maps to an integer in float order (-0 and +0 both to 0).
        i = x.view(bits).astype(np.int64)
        return np.where(i < 0, np.iinfo(bits).min - i, i)

    keep = ~(np.isnan(a) | np.isnan(b))
    if not keep.any():
        return 0
    return int(np.max(np.abs(ordered(a[keep]) - ordered(b[keep]))))


def compare_part(a, b, params_prefix: str | None = "params") -> dict:
    """Differences between two subtrees: leaf count, max |a-b| over all leaves and over the
    parameter leaves (paths under `params_prefix`; '' = all, None = none), the largest
    difference in ULPs over all float leaves, whether every leaf is bit-identical, and the paths
    that cannot be compared (present in one only, or of another shape or dtype)."""
    la, lb = _leaves(a), _leaves(b)
    mismatched = sorted(set(la) ^ set(lb))
    max_all, max_params, max_ulp, identical = 0.0, None, 0, not mismatched
    for path in sorted(set(la) & set(lb)):
        x, y = la[path], lb[path]
        if x.shape != y.shape or x.dtype != y.dtype:
            mismatched.append(path)
            identical = False
            continue
        d = _max_abs_diff(x, y)
        same = x.tobytes() == y.tobytes()
        identical = identical and same
        max_all = max(max_all, d)
        max_ulp = max(max_ulp, max_ulp_diff(x, y))
        if params_prefix is not None and (
            not params_prefix or path == params_prefix or path.startswith(params_prefix + "/")
        ):
            max_params = max(max_params or 0.0, d)
    return {
        "leaves": len(la),
        "max_abs_diff": max_all,
        "params_max_abs_diff": max_params,
        "max_ulp": max_ulp,
        "identical": identical,
        "mismatched": mismatched,
    }


def params_prefix(part) -> str | None:
    """Where a state part keeps its parameters: under 'params' (a trained network, next to its
    optimizer state), the whole part (a frozen network), or nowhere (the step, the key)."""
    if not isinstance(part, dict):
        return None
    return "params" if "params" in part else ""


def network_names(state: dict) -> list[str]:
    """The parts of a restored state that are networks, in name order."""
    return sorted(k for k in state if k not in COUNTER_KEYS)


def compare_states(state_a: dict, state_b: dict) -> dict:
    """compare_part for each part of two restored training states (networks first)."""
    names = network_names({**state_a, **state_b})
    keys = names + [k for k in COUNTER_KEYS if k in state_a or k in state_b]
    return {
        k: compare_part(
            state_a.get(k, {}), state_b.get(k, {}), params_prefix(state_a.get(k, state_b.get(k)))
        )
        for k in keys
    }


def checkpoint_divergence(workdir_a: str, workdir_b: str) -> dict | None:
    """Where two runs' checkpoints first differ: at 'step' (the first step both kept whose
    states differ), after 'last_same' (the step before it where they agree; None when the first
    common checkpoint differs already), in 'networks' (the parts that differ), by 'max_ulp'.
    None when every common checkpoint agrees."""
    common = sorted(set(checkpoint_steps(workdir_a)) & set(checkpoint_steps(workdir_b)))
    last_same = None
    for step in common:
        parts = compare_states(restore_raw(workdir_a, step)[1]["state"],
                               restore_raw(workdir_b, step)[1]["state"])  # fmt: skip
        differ = {name: p for name, p in parts.items() if not p["identical"]}
        if differ:
            return {
                "step": step,
                "last_same": last_same,
                "networks": sorted(differ),
                "max_ulp": max(p["max_ulp"] for p in differ.values()),
            }
        last_same = step
    return None


def _records(path: str):
    """The records of a TFRecord file (TensorBoard's event files); CRCs are not checked."""
    with open(path, "rb") as f:
        while header := f.read(12):  # uint64 length, uint32 CRC of the length.
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            f.read(4)  # CRC of the data.
            yield data


def read_scalars(workdir: str) -> dict[str, dict[int, np.ndarray]]:
    """{tag: {step: value}} of the SCALAR_PREFIXES scalars in `workdir`'s event files, each
    value a numpy scalar of the type it was written with."""
    from tensorboard.compat.proto import event_pb2, types_pb2

    dtypes = {types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64}
    scalars = {}
    for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))):
        for record in _records(path):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if not value.tag.startswith(SCALAR_PREFIXES):
                    continue
                if value.HasField("tensor") and value.tensor.dtype in dtypes:
                    dtype = dtypes[value.tensor.dtype]
                    tensor = value.tensor
                    vals = np.frombuffer(tensor.tensor_content, dtype) if tensor.tensor_content \
                        else np.asarray(tensor.float_val or tensor.double_val, dtype)  # fmt: skip
                    number = vals.reshape(-1)[0]
                else:
                    number = np.float32(value.simple_value)
                scalars.setdefault(value.tag, {})[int(event.step)] = number
    return scalars


def tag_network(tag: str, networks) -> str | None:
    """The network a scalar is about when its name says so ('train/loss/dimg_adv' -> 'dimg'
    when 'dimg' is one of `networks`)."""
    head = tag.rsplit("/", 1)[-1].split("_", 1)[0]
    return head if head in networks else None


def scalar_divergence(scalars_a: dict, scalars_b: dict, networks=()) -> dict | None:
    """The first logged step at which two runs' common scalars differ: 'step', 'last_same'
    (the logged step before it), 'tags' that differ there, the 'networks' they name, and
    'max_ulp'. None when every common scalar agrees."""
    by_step = {}
    for tag in set(scalars_a) & set(scalars_b):
        for step in set(scalars_a[tag]) & set(scalars_b[tag]):
            a, b = np.asarray(scalars_a[tag][step]), np.asarray(scalars_b[tag][step])
            by_step.setdefault(step, {})[tag] = (a, b)
    last_same = None
    for step in sorted(by_step):
        differ = {t: ab for t, ab in by_step[step].items() if ab[0].tobytes() != ab[1].tobytes()}
        if differ:
            named = {tag_network(t, networks) for t in differ} - {None}
            return {
                "step": step,
                "last_same": last_same,
                "tags": sorted(differ),
                "networks": sorted(named),
                "max_ulp": max(max_ulp_diff(a, b) for a, b in differ.values()),
            }
        last_same = step
    return None


def _read_summary(workdir: str) -> dict | None:
    path = os.path.join(workdir, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def compare_metrics(summary_a: dict | None, summary_b: dict | None) -> dict:
    """{section: {metric: {'a', 'b', 'diff'}}} for METRIC_SECTIONS: diff is b - a for numbers,
    0 for equal values of other kinds (lists, None: a metric a run did not measure), else None."""
    out = {}
    for section in METRIC_SECTIONS:
        ma = (summary_a or {}).get(section) or {}
        mb = (summary_b or {}).get(section) or {}
        rows = {}
        for name in sorted(set(ma) | set(mb)):
            a, b = ma.get(name), mb.get(name)
            diff = b - a if _is_number(a) and _is_number(b) else 0 if a == b else None
            rows[name] = {"a": a, "b": b, "diff": diff}
        out[section] = rows
    return out


def compare_runs(workdir_a: str, workdir_b: str, step: int | None = None, best: bool = False):
    """The full report (a dict) of two runs; raises MissingRunError."""
    step_a, run_a = restore_raw(workdir_a, step, best)
    step_b, run_b = restore_raw(workdir_b, step, best)
    parts = compare_states(run_a["state"], run_b["state"])
    identical = all(p["identical"] for p in parts.values())
    summary_a, summary_b = _read_summary(workdir_a), _read_summary(workdir_b)
    notes = []
    if step_a != step_b:
        notes.append(f"the runs are compared at different steps ({step_a} and {step_b})")
    for name, summary, workdir in (("a", summary_a, workdir_a), ("b", summary_b, workdir_b)):
        if summary is None:
            notes.append(f"run {name} ({workdir}) has no summary.json")
    return {
        "a": os.path.abspath(workdir_a),
        "b": os.path.abspath(workdir_b),
        "step_a": step_a,
        "step_b": step_b,
        "identical": identical,
        "data_state_identical": run_a["data"] == run_b["data"],
        "networks": parts,
        # Only when they differ: reading every checkpoint and event file takes a while.
        "divergence": None
        if identical
        else {
            "checkpoints": checkpoint_divergence(workdir_a, workdir_b),
            "scalars": scalar_divergence(
                read_scalars(workdir_a), read_scalars(workdir_b), network_names(run_a["state"])
            ),
        },
        "metrics": compare_metrics(summary_a, summary_b),
        "notes": notes,
    }


def _num(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "0" if x == 0 else f"{x:.4g}"
    return str(x)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _divergence_line(source: str, found: dict | None) -> str:
    """One line: where the runs first differ according to `source`."""
    if found is None:
        return f"First difference ({source}): none where both runs have values"
    where = "the first common one" if found["last_same"] is None else (
        f"same at step {found['last_same']}")  # fmt: skip
    what = ", ".join(found.get("tags") or found["networks"])
    networks = f" (networks: {', '.join(found['networks'])})" if found.get("tags") else ""
    return (
        f"First difference ({source}): step {found['step']} ({where}), in {what}{networks}, "
        f"up to {found['max_ulp']} ULPs"
    )


def format_report(report: dict) -> str:
    """The report as readable text (tables of the state parts and the metrics)."""
    lines = [f"A: {report['a']} (step {report['step_a']})"]
    lines.append(f"B: {report['b']} (step {report['step_b']})")
    lines.append("")
    rows = [("part", "leaves", "max|a-b|", "params max|a-b|", "max ULPs", "bit-identical")]
    for name, p in report["networks"].items():
        same = "yes" if p["identical"] else "no"
        if p["mismatched"]:
            same += f" ({len(p['mismatched'])} leaves differ in shape/dtype/presence)"
        rows.append(
            (name, str(p["leaves"]), _num(p["max_abs_diff"]), _num(p["params_max_abs_diff"]),
             str(p["max_ulp"]), same)
        )  # fmt: skip
    lines += _table(rows)
    lines.append(f"All state bit-identical: {'yes' if report['identical'] else 'no'}")
    same_data = "yes" if report["data_state_identical"] else "no"
    lines.append(f"Data iterator state identical: {same_data}")
    for source, found in (report["divergence"] or {}).items():
        lines.append(_divergence_line(source, found))
    rows = [("metric", "a", "b", "b-a")]
    for section, metrics in report["metrics"].items():
        for name, m in metrics.items():
            rows.append((f"{section}/{name}", _num(m["a"]), _num(m["b"]), _num(m["diff"])))
    if len(rows) > 1:
        lines.append("")
        lines += _table(rows)
    for note in report["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _json_safe(x):
    """Non-finite floats as strings, so the JSON line stays standard JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """--step and --best; the two run folders are the positional arguments."""
    flags.DEFINE_integer(
        "step", None, "Checkpoint step of both runs (default: the latest).", flag_values=flag_values
    )
    flags.DEFINE_bool(
        "best", False, "Compare the best checkpoints instead.", flag_values=flag_values
    )


def main(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> int:
    """The program, given argv = [program, run a, run b] after flag parsing: 0 after a report
    (identical or not), 2 when the command line is wrong or a run cannot be read."""
    if len(argv) != 3:
        return cli.error(f"expected two run folders, got {len(argv) - 1}; usage: {USAGE}")
    logging.set_verbosity(logging.ERROR)  # Orbax reports every restore; the table is enough.
    try:
        report = compare_runs(argv[1], argv[2], flag_values.step, flag_values.best)
    except MissingRunError as error:
        return cli.error(str(error))
    print(format_report(report))
    print(json.dumps(_json_safe(report), sort_keys=True))
    return 0


if __name__ == "__main__":
    cli.run(main, define_flags)
