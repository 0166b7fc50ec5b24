"""Print the command (or folder) of sweep entries, for cluster scripts (fergan/launch/slurm.sh).

  python -m fergan.launch.sweep_entry --config configs/ck_plus.py \
      --sweep sweeps/variants_x_folds.py --workdir runs/ck --index 3 [-- extra flags]

prints entry 3's `python -m fergan.main ...` command, shell-quoted on one line; without --index,
every entry's, one per line. `--print workdir|name` prints the run's folder or name instead, and
`--count` the number of entries. The sweep is checked against the config first.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from fergan.launch import sweep


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fergan.launch.sweep_entry", description=__doc__.splitlines()[0]
    )
    p.add_argument("--config", required=True, help="Config file (configs/<name>.py[:arg]).")
    p.add_argument("--sweep", required=True, help="Sweep file defining get_sweep().")
    p.add_argument("--workdir", required=True, help="Root folder; run i goes to <root>/<name>.")
    p.add_argument("--index", type=int, default=None, help="Entry to print (default: all).")
    p.add_argument("--count", action="store_true", help="Print the number of entries only.")
    p.add_argument(
        "--print",
        dest="field",
        choices=("command", "workdir", "name"),
        default="command",
        help="What to print for each entry.",
    )
    p.add_argument("--python", default="python", help="Interpreter in the printed command.")
    return p


def lines(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """The output lines for parsed `args` and pass-through flags `extra`."""
    entries = sweep.load_sweep(args.sweep, sweep.load_config(args.config))
    sweep.check_extra_flags(extra, entries)
    if args.count:
        return [str(len(entries))]
    if args.index is not None:
        if not 0 <= args.index < len(entries):
            raise sweep.SweepError(
                f"--index {args.index} is out of range: {args.sweep} has {len(entries)} entries "
                f"(0..{len(entries) - 1})."
            )
        entries = [entries[args.index]]
    out = []
    for entry in entries:
        if args.field == "name":
            out.append(sweep.run_name(entry))
        elif args.field == "workdir":
            out.append(os.path.join(args.workdir, sweep.run_name(entry)))
        else:
            argv = sweep.command_for(args.config, args.workdir, entry, args.python, extra)
            out.append(shlex.join(argv))
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; 0 on success, 1 with a one-line message on a bad sweep or index."""
    own, extra = sweep.split_passthrough(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(own)
    try:
        output = lines(args, extra)
    except sweep.SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
