"""What a person sees in the terminal, and where library noise goes instead.

The program prints a short header, one live progress line per long phase (dataset build,
identity pretraining, training) with step/total, steps/s, an h:mm:ss ETA and the key losses,
one line per evaluation and a closing summary. Everything libraries log (Orbax, TFDS, JAX,
Python warnings) and fergan's own INFO lines go to `<workdir>/fergan.log` once `log_to_file`
has run; fergan's own warnings (`warn`) are also shown on stderr. Only process 0 prints.
"""

from __future__ import annotations

import contextlib
import logging as py_logging
import math
import os
import sys

import tqdm
from absl import logging

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_file_handler: py_logging.Handler | None = None


def _is_main_process() -> bool:
    import jax  # Deferred: the CLI sets XLA flags before anything starts the backend.

    return jax.process_index() == 0


def hms(seconds: float | None) -> str:
    """Seconds as h:mm:ss ('?' when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def say(line: str = "") -> None:
    """One line for the person at the terminal (stdout; process 0 only; keeps bars intact)."""
    if _is_main_process():
        tqdm.tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()
    logging.info("%s", line)


def warn(line: str) -> None:
    """A warning on stderr and in the log file."""
    if _is_main_process():
        tqdm.tqdm.write(f"warning: {line}", file=sys.stderr)
    logging.warning("%s", line)


class _Bar(tqdm.tqdm):
    """tqdm with `speed` (steps/s) and `eta` (h:mm:ss) fields measured from the end of the first
    step of this session, so that compilation does not distort them."""

    _first: tuple[float, int] | None = None

    def update(self, n=1):
        shown = super().update(n)
        if self.disable:  # A disabled bar (processes other than 0) keeps no counters.
            return shown
        if self._first is None and self.n > self.initial:
            self._first = (self._time(), self.n)
        return shown

    @property
    def format_dict(self):
        d = super().format_dict
        rate = None
        if self._first is not None and self.n > self._first[1]:
            rate = (self.n - self._first[1]) / max(self._time() - self._first[0], 1e-9)
        d["speed"] = f"{rate:.2f}" if rate else "?"
        d["eta"] = hms((d["total"] - d["n"]) / rate) if rate and d["total"] else "?"
        return d


class Progress:
    """A live progress line for a counted phase: `update(n)` moves it to n done steps,
    `metrics(...)` shows the latest values beside it. Disabled outside process 0."""

    def __init__(self, name: str, total: int, initial: int = 0, unit: str = "step"):
        self._bar = _Bar(
            total=total,
            initial=initial,
            desc=name,
            unit=unit,
            file=sys.stdout,
            dynamic_ncols=True,
            mininterval=0.5,
            disable=not _is_main_process(),
            bar_format="{desc} {n_fmt}/{total_fmt} {percentage:3.0f}% | {speed} " + unit + "/s | "
            "ETA {eta}{postfix}",
        )

    def update(self, done: int) -> None:
        """Sets the number of completed steps."""
        self._bar.update(done - self._bar.n)

    def metrics(self, values: dict[str, float]) -> None:
        """Shows `name value` pairs after the ETA (only at logging intervals: no host sync)."""
        # Per-replica metrics are lists: show their mean.
        mean = lambda v: sum(v) / len(v) if isinstance(v, list | tuple) else v
        text = " ".join(f"{k} {mean(v):.3g}" for k, v in values.items())
        self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        self._bar.close()


@contextlib.contextmanager
def progress(name: str, total: int, initial: int = 0, unit: str = "step"):
    """`Progress` as a context manager (closed, leaving its last line, on exit)."""
    bar = Progress(name, total, initial, unit)
    try:
        yield bar
    finally:
        bar.close()


def track(items, name: str, total: int | None = None, unit: str = "item"):
    """Yields `items` while a progress line counts them (`total` for a lazy iterable)."""
    if total is None:
        items = list(items)
        total = len(items)
    with progress(name, total, unit=unit) as bar:
        for done, item in enumerate(items, 1):
            yield item
            bar.update(done)


def log_to_file(workdir: str) -> str:
    """Sends every log record (absl, Python loggers, warnings) to `<workdir>/fergan.log` instead
    of the terminal. Returns the log path."""
    global _file_handler
    path = os.path.join(os.path.abspath(workdir), "fergan.log")
    root = py_logging.getLogger()
    if _file_handler is not None:
        root.removeHandler(_file_handler)
        _file_handler.close()
    _file_handler = py_logging.FileHandler(path)
    _file_handler.setFormatter(py_logging.Formatter(_LOG_FORMAT))
    root.addHandler(_file_handler)
    absl_handler = logging.get_absl_handler()
    if absl_handler in root.handlers:
        root.removeHandler(absl_handler)
    root.setLevel(py_logging.INFO)
    logging.set_verbosity(logging.INFO)
    py_logging.captureWarnings(True)
    return path


def quiet_libraries() -> None:
    """Keeps native libraries from printing at start-up (TensorFlow's C++ runtime reads these
    when it loads, so this runs before TFDS is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # TensorFlow (TFDS' reader here, no training math) prints a oneDNN notice at load otherwise.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # Until `log_to_file` has a file to write to, only warnings reach the terminal.
    logging.set_verbosity(logging.WARNING)
