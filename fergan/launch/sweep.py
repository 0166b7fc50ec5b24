"""Sweep files: lists of config overrides, one run each.

A sweep file is a Python file, like the configs, that defines `get_sweep()` returning a list of
dicts. Each dict maps dotted config keys to values and describes one run:

    def get_sweep():
        return [{"variant": v, "data.fold": f} for v in ("BASELINE", "FESR_JL") for f in range(5)]

`load_sweep` checks every key against a base config, `run_name` names a run's folder after its
overrides, and `command_for` builds the `python -m fergan.main` command line of one run;
`parse_launcher_flags` reads the command line of a launcher (fergan.launch.local, sweep_entry).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shlex
from collections.abc import Mapping, Sequence

import ml_collections
from absl import flags

from fergan.tools import cli

# Types a `--config.<key>=<value>` flag can carry back unchanged.
SCALAR_TYPES = (bool, int, float, str)
# Longest run name kept verbatim; longer ones are cut and suffixed with a hash of the full name.
MAX_NAME_LENGTH = 160
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


class SweepError(ValueError):
    """A sweep file (or a config it is checked against) is malformed; the message names it."""


def _load_module(path: str, what: str):
    """Execute the Python file `path` as a fresh module (configs and sweeps are plain files)."""
    if not os.path.isfile(path):
        raise SweepError(f"{what} {path!r} does not exist.")
    name = "_fergan_" + re.sub(r"\W", "_", os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SweepError(f"{what} {path!r} is not a Python file.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(spec: str) -> ml_collections.ConfigDict:
    """The config of `spec` (`configs/<name>.py[:arg]`), read as `--config` reads it."""
    path, *arg = spec.split(":", 1)
    module = _load_module(path, "Config file")
    if not hasattr(module, "get_config"):
        raise SweepError(f"Config file {path!r} defines no get_config().")
    return module.get_config(*arg)


def _field(config: ml_collections.ConfigDict, key: str):
    """The leaf value at dotted `key`; raises KeyError with the part that is missing."""
    node = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            where = ".".join(parts[:depth]) or "the config"
            raise KeyError(f"{where} has no key {part!r}")
        node = node[part]
    if isinstance(node, ml_collections.ConfigDict):
        raise KeyError(f"{key!r} is a group of keys, not a value")
    return node


def _compatible(current, value) -> bool:
    """Whether `value` may replace `current` (the rules `--config.<key>=` parsing applies)."""
    if current is None:  # A placeholder field takes any scalar.
        return True
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if isinstance(current, float):
        return isinstance(value, int | float)
    return isinstance(value, type(current))


def validate_overrides(
    overrides: Mapping[str, object],
    config: ml_collections.ConfigDict | None,
    where: str = "overrides",
) -> None:
    """Raise SweepError unless every key is a dotted key string and every value a scalar a
    command line can carry; with `config`, also unless each key is a value of `config` of a
    compatible type."""
    for key, value in overrides.items():
        if not isinstance(key, str) or not key or key.startswith(".") or key.endswith("."):
            raise SweepError(f"{where}: key {key!r} is not a dotted config key.")
        if not isinstance(value, SCALAR_TYPES):
            raise SweepError(
                f"{where}: {key}={value!r} is a {type(value).__name__}; sweep values must be "
                "bool, int, float or str."
            )
        if config is None:
            continue
        try:
            current = _field(config, key)
        except KeyError as error:
            raise SweepError(f"{where}: {key!r} is not a config key ({error.args[0]}).") from None
        if not _compatible(current, value):
            raise SweepError(
                f"{where}: {key}={value!r} is a {type(value).__name__} but the config's {key} "
                f"is a {type(current).__name__} ({current!r})."
            )


def load_sweep(
    path: str, base_config: ml_collections.ConfigDict | str | None = None
) -> list[dict[str, object]]:
    """The override dicts of the sweep file `path`, checked (against `base_config` when given:
    a ConfigDict or a `--config` spec). Raises SweepError naming the file on any problem."""
    module = _load_module(path, "Sweep file")
    get_sweep = getattr(module, "get_sweep", None)
    if not callable(get_sweep):
        raise SweepError(f"Sweep file {path!r} defines no get_sweep() function.")
    entries = get_sweep()
    if not isinstance(entries, list):
        raise SweepError(
            f"Sweep file {path!r}: get_sweep() returned a {type(entries).__name__}, not a list "
            "of dicts."
        )
    if not entries:
        raise SweepError(f"Sweep file {path!r}: get_sweep() returned an empty list.")
    if isinstance(base_config, str):
        base_config = load_config(base_config)
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"Sweep file {path!r}, entry {index}"
        if not isinstance(entry, dict):
            raise SweepError(f"{where} is a {type(entry).__name__}, not a dict of overrides.")
        validate_overrides(entry, base_config, where)
        name = run_name(entry)
        if name in names:
            raise SweepError(
                f"{where} gives the same run folder {name!r} as entry {names[name]}; every entry "
                "needs distinct overrides."
            )
        names[name] = index
    return entries


def format_value(value: object) -> str:
    """`value` as `--config.<key>=` parses it back (floats keep every digit)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def run_name(overrides: Mapping[str, object]) -> str:
    """A stable folder name for a run, e.g. `variant=FESR_JL,seed=1` (keys in the entry's order).

    Characters outside [A-Za-z0-9._=,+-] become '_'; very long names are cut and end in a hash of
    the full name so that they stay distinct. No overrides: `base`.
    """
    if not overrides:
        return "base"
    full = ",".join(f"{key}={format_value(value)}" for key, value in overrides.items())
    name = _UNSAFE.sub("_", full)
    if len(name) > MAX_NAME_LENGTH:
        digest = hashlib.sha1(full.encode()).hexdigest()[:10]
        name = f"{name[: MAX_NAME_LENGTH - 11]}-{digest}"
    return name


def override_flags(overrides: Mapping[str, object]) -> list[str]:
    """`--config.<key>=<value>` flags for `overrides`."""
    return [f"--config.{key}={format_value(value)}" for key, value in overrides.items()]


def command_for(
    config_path: str,
    workdir_root: str,
    overrides: Mapping[str, object],
    python: str = "python",
    extra_flags: Sequence[str] = (),
) -> list[str]:
    """argv of one run: `python -m fergan.main --config <config> --workdir <root>/<run_name>
    [extra flags] --config.<k>=<v> ...` (the sweep's overrides come last, so they win)."""
    return [
        python,
        "-m",
        "fergan.main",
        "--config",
        config_path,
        "--workdir",
        os.path.join(workdir_root, run_name(overrides)),
        *extra_flags,
        *override_flags(overrides),
    ]


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(launcher arguments, flags after the first `--` that go to every run unchanged)."""
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def parse_launcher_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> list[str]:
    """A launcher's command line `argv` (program name first): its own flags, parsed into
    `flag_values`, before the first `--`; the flags for every run after it.

    Returns:
      [program, *flags for every run]. An argument that is not a flag before `--`, or a bad
      flag, exits with one line.
    """
    own, extra = split_passthrough(argv)
    rest = cli.parse(flag_values, own)
    if len(rest) > 1:
        cli.fail(f"unexpected arguments {shlex.join(rest[1:])} (flags for every run go after --).")
    return [rest[0], *extra]


def check_extra_flags(extra_flags: Sequence[str], entries: Sequence[Mapping[str, object]]) -> None:
    """Refuse pass-through flags that the launcher sets itself or that a sweep entry also sets
    (the run's folder name would then misdescribe the run)."""
    swept = {key for entry in entries for key in entry}
    for flag in extra_flags:
        name = flag.split("=", 1)[0]
        if name in ("--config", "--workdir"):
            raise SweepError(f"Pass-through flag {flag!r}: the launcher sets {name} itself.")
        if name.startswith("--config.") and name[len("--config.") :] in swept:
            raise SweepError(
                f"Pass-through flag {flag!r} sets {name[len('--config.') :]}, which the sweep "
                "also sets; drop one of them."
            )
