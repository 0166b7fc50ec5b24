"""absl command lines for the tools, launchers and benchmarks, in the style of fergan.main: a bad
flag or argument is reported as one line, `error: <message>`, on stderr.

A program defines its flags in `define_flags(flag_values)` and reads them in
`main(argv, flag_values)`, which returns the exit status. `run` makes it this process's program
under absl.app (its flags in absl's global FLAGS, so --help lists them); `call` runs it on a given
command line with flags of its own, so tests can call several programs, or one program several
times, in one process without their flags meeting.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import app, flags

EXIT_USAGE = 2  # A bad flag or argument, as fergan.main (and argparse) exit.

# main(argv after flag parsing, program name first; the parsed flags) -> exit status.
Main = Callable[[list[str], flags.FlagValues], int]
DefineFlags = Callable[[flags.FlagValues], None]
# parser(flags to fill, the whole command line) -> what main receives as argv.
Parser = Callable[[flags.FlagValues, Sequence[str]], list[str]]


def error(message: str, code: int = EXIT_USAGE) -> int:
    """Prints `error: <the first line of message>` on stderr; returns `code`, the exit status."""
    first = (str(message).strip().splitlines() or ["unknown error"])[0]
    print(f"error: {first}", file=sys.stderr)
    return code


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """`error`, then exit with `code`."""
    sys.exit(error(message, code))


def parse(flag_values: flags.FlagValues, argv: Sequence[str]) -> list[str]:
    """Parses the command line `argv` (program name first) into `flag_values`.

    Returns:
      The arguments that are not flags, program name first. An unknown flag or a bad value exits.
    """
    try:
        return flag_values(list(argv))
    except flags.Error as e:
        fail(str(e))


def run(main: Main, define_flags: DefineFlags, parser: Parser = parse) -> NoReturn:
    """Runs `main` as this process's program and exits with the status it returns."""
    define_flags(flags.FLAGS)
    app.run(main, flags_parser=functools.partial(parser, flags.FLAGS))


def call(main: Main, define_flags: DefineFlags, argv: Sequence[str], parser: Parser = parse) -> int:
    """Runs `main` on the command line `argv` (without the program name) in this process, with
    flags of its own; returns the exit status, also when the command line is refused."""
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    try:
        return main(parser(flag_values, ["main", *argv]), flag_values)
    except SystemExit as e:
        return e.code
