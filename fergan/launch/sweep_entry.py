r"""Print the command (or folder) of sweep entries, for cluster scripts (fergan/launch/slurm.sh).

  python -m fergan.launch.sweep_entry --config configs/ck_plus.py \
      --sweep sweeps/variants_x_folds.py --workdir runs/ck --index 3 [-- extra flags]

prints entry 3's `python -m fergan.main ...` command, shell-quoted on one line; without --index,
every entry's, one per line. `--print workdir|name` prints the run's folder or name instead, and
`--count` the number of entries. The sweep is checked against the config first.
"""

from __future__ import annotations

import os
import shlex

from absl import flags

from fergan.launch import sweep
from fergan.tools import cli


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The helper's own flags (those for every run come after `--`)."""
    fv = flag_values
    flags.DEFINE_string("config", None, "Config file (configs/<name>.py[:arg]).", flag_values=fv)
    flags.DEFINE_string("sweep", None, "Sweep file defining get_sweep().", flag_values=fv)
    flags.DEFINE_string(
        "workdir", None, "Root folder; run i goes to <root>/<name>.", flag_values=fv
    )
    flags.DEFINE_integer("index", None, "Entry to print (default: all).", flag_values=fv)
    flags.DEFINE_bool("count", False, "Print the number of entries only.", flag_values=fv)
    flags.DEFINE_enum(
        "print",
        "command",
        ["command", "workdir", "name"],
        "What to print for each entry.",
        flag_values=fv,
    )
    flags.DEFINE_string("python", "python", "Interpreter in the printed command.", flag_values=fv)
    flags.mark_flags_as_required(["config", "sweep", "workdir"], flag_values=fv)


def lines(
    config: str,
    sweep_path: str,
    workdir: str,
    extra: list[str],
    *,
    index: int | None = None,
    count: bool = False,
    field: str = "command",
    python: str = "python",
) -> list[str]:
    """The output lines: the entry count, or for entry `index` (default every entry) its
    `field` (command, workdir or name), with pass-through flags `extra` in the commands."""
    entries = sweep.load_sweep(sweep_path, sweep.load_config(config))
    sweep.check_extra_flags(extra, entries)
    if count:
        return [str(len(entries))]
    if index is not None:
        if not 0 <= index < len(entries):
            raise sweep.SweepError(
                f"--index {index} is out of range: {sweep_path} has {len(entries)} entries "
                f"(0..{len(entries) - 1})."
            )
        entries = [entries[index]]
    out = []
    for entry in entries:
        if field == "name":
            out.append(sweep.run_name(entry))
        elif field == "workdir":
            out.append(os.path.join(workdir, sweep.run_name(entry)))
        else:
            argv = sweep.command_for(config, workdir, entry, python, extra)
            out.append(shlex.join(argv))
    return out


def main(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> int:
    """The program, given argv = [program, *flags for every run] after flag parsing: 0 on
    success, 1 with a one-line message on a bad sweep or index."""
    fv = flag_values
    try:
        output = lines(
            fv.config,
            fv.sweep,
            fv.workdir,
            argv[1:],
            index=fv.index,
            count=fv.count,
            field=fv["print"].value,
            python=fv.python,
        )
    except sweep.SweepError as error:
        return cli.error(str(error), code=1)
    print("\n".join(output))
    return 0


if __name__ == "__main__":
    cli.run(main, define_flags, sweep.parse_launcher_flags)
