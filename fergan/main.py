"""Entry point: `python -m fergan.main --config configs/<name>.py --workdir <dir> [--mode ...]`.

Modes: train (default; resumes from the workdir), evaluate (a saved checkpoint), synthesize
(re-render image files), pretrain_identity (train LightCNN-29 on the dataset's subject ids),
cross_validate (k folds x --variants, resumable; --fold runs one fold), aggregate (collect folds).
Override any config key with `--config.<key>=<value>`.

The whole resolved run is validated before anything is written. A user error (a bad key, value,
file or folder) prints one line on stderr and exits with code 2; `--debug` adds the traceback.
"""

import json
import os
import re
import sys
import time
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from fergan import console, determinism
from fergan.launch import distributed

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/<name>.py[:arg]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder: checkpoints, logs, summary, samples.")
distributed.define_flags()
determinism.define_flags()
MODES = ("train", "evaluate", "synthesize", "pretrain_identity", "cross_validate", "aggregate")
_MODE = flags.DEFINE_enum("mode", "train", MODES, "What to do.")
_STEP = flags.DEFINE_integer("step", None, "evaluate/synthesize: checkpoint step (default latest).")
_BEST = flags.DEFINE_bool("best", False, "evaluate/synthesize: use the best checkpoint.")
_INPUT = flags.DEFINE_string("input", None, "synthesize: an image file or a folder of images.")
_OUTPUT = flags.DEFINE_string("output", None, "synthesize: output folder (<workdir>/synthesized).")
_EXPRESSION = flags.DEFINE_string(
    "expression", None, "synthesize: one expression (name or index); default: all of them."
)
_INTENSITIES = flags.DEFINE_list(
    "intensities", ["0.25", "0.5", "0.75", "1.0"], "synthesize: intensities for --expression."
)
_VARIANTS = flags.DEFINE_list(
    "variants",
    None,
    "cross_validate: variants (default: the config's variant); aggregate: default every variant "
    "with a finished fold.",
)
_FOLD = flags.DEFINE_integer(
    "fold", -1, "cross_validate: run only this fold (-1 = all folds in this process)."
)
_DEBUG = flags.DEFINE_bool("debug", False, "Show the traceback of an error.")

EXIT_USER_ERROR = 2


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (config, files, data), reported in one line."""
    from fergan.types import NonFiniteLossError  # Not via the training loop: TensorFlow.

    return (ValueError, OSError, NonFiniteLossError, app.UsageError)


def one_line(error: BaseException) -> str:
    """The first line of an error's message (naming the key, file or value)."""
    text = str(error).strip()
    if isinstance(error, KeyError | AttributeError):  # Their str() quotes the missing name.
        text = text.strip("\"'")
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    return (text.splitlines() or [type(error).__name__])[0]


def fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    """Print `error: <message>` on stderr and exit."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _override_named(argv: list[str], missing: str) -> str | None:
    """The `--config.<key>` argument whose last part is `missing`."""
    for arg in argv:
        match = re.match(r"--config\.([\w.]+)", arg)
        if match and match.group(1).split(".")[-1] == missing:
            return match.group(1)
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one-line errors: unknown flags, bad values, unknown config keys."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(one_line(error))
    except (AttributeError, KeyError) as error:
        missing = one_line(error)
        key = _override_named(argv, missing)
        if key is None:
            fail(f"--config: {missing}")
        fail(f"--config.{key}: the config has no key {key!r} (see configs/default.py)")
    except Exception as error:  # A config file that does not load.
        if _DEBUG.present or "--debug" in argv:
            raise
        fail(f"--config: {type(error).__name__}: {one_line(error)}")
    return []


def check_mode_inputs(config, workdir: str, mode: str) -> None:
    """Everything a mode needs, checked before anything is written (cheap checks first)."""
    from fergan.experiments import checks

    if mode == "synthesize":
        _check_synthesize_flags(config)
    if mode in ("train", "evaluate", "synthesize", "pretrain_identity"):
        checks.check_run(config, workdir, mode, step=_STEP.value, best=_BEST.value)
    elif mode == "cross_validate":
        checks.check_config(config)
        from fergan.data import pipeline

        pipeline.check_data(config)
    elif mode == "aggregate" and not os.path.isdir(workdir):
        raise FileNotFoundError(f"--workdir={workdir} does not exist: nothing to aggregate.")


def _check_synthesize_flags(config) -> None:
    from fergan.data import builders
    from fergan.experiments import synthesize

    if not _INPUT.value:
        raise app.UsageError("--mode=synthesize needs --input (an image file or a folder).")
    synthesize.input_files(_INPUT.value)
    if _EXPRESSION.value is not None:
        synthesize.class_index(_EXPRESSION.value, builders.builder_config(config).class_names)
    for value in _INTENSITIES.value:
        try:
            float(value)
        except ValueError:
            raise ValueError(f"--intensities: {value!r} is not a number.") from None


def run(mode: str, config, workdir: str) -> dict | list:
    """Dispatch one mode; returns its result (summary dict or written paths)."""
    # Imported here so `--help` stays fast and flags parse before JAX starts.
    from fergan.experiments import train
    from fergan.experiments.config import resolve_config

    config = resolve_config(config, workdir, mode)
    if mode == "train":
        summary = train.train_and_evaluate(config, workdir)
        _closing_summary(summary, workdir)
        return summary
    if mode == "evaluate":
        summary = train.evaluate_checkpoint(config, workdir, _STEP.value, _BEST.value)
        console.say(f"evaluation: {summary['path']}")
        if summary["samples"]:
            console.say(f"samples:    {summary['samples']}")
        return summary
    if mode == "pretrain_identity":
        from fergan.identity.pretrain import pretrain_identity

        result = pretrain_identity(config, workdir)
        console.say(json.dumps(result))
        return result
    if mode == "synthesize":
        return _synthesize(config, workdir)
    from fergan.experiments import cross_validate

    if mode == "cross_validate":
        result = cross_validate.cross_validate(config, workdir, _VARIANTS.value, _FOLD.value)
    else:
        # Default: every variant with a finished fold, not only the config's.
        result = cross_validate.aggregate(config, workdir, _VARIANTS.value)
    with open(os.path.join(workdir, cross_validate.CV_MARKDOWN)) as f:
        console.say(f.read())
    console.say(f"results: {os.path.join(workdir, cross_validate.CV_JSON)}")
    return result


def _header(config, workdir: str, mode: str) -> None:
    """The first lines of every run: what runs where, and where its outputs go."""
    import jax

    devices = jax.devices()
    console.say(
        f"fergan {mode} | config {config.get('name', '')} | "
        f"method {config.get('method', 'fesr')} | variant {config.variant} | "
        f"seed {config.seed} | {len(devices)} {devices[0].platform} device(s), "
        f"{config.train.parallel}"
        + (f" | {config.num_replicas} replicas" if config.num_replicas > 1 else "")
    )
    console.say(f"workdir: {os.path.abspath(workdir)} (log: fergan.log)")


def _closing_summary(summary: dict, workdir: str) -> None:
    """The last lines of a training run: the result beside chance, and where everything is."""
    folder = os.path.abspath(workdir)
    metrics = summary["eval"]
    console.say(
        f"done in {console.hms(summary['wall_time_s'])}: held-out accuracy "
        f"{100 * metrics['accuracy']:.1f}% (chance {100 * summary['chance_accuracy']:.1f}%, "
        f"{metrics['num_examples']} faces)"
    )
    console.say(f"summary:     {os.path.join(folder, 'summary.json')}")
    if os.path.isdir(os.path.join(folder, "samples")):
        console.say(f"samples:     {os.path.join(folder, 'samples')}")
    console.say(f"checkpoints: {os.path.join(folder, 'checkpoints')}")
    console.say(f"log:         {os.path.join(folder, 'fergan.log')}")
    console.say(f"tensorboard --logdir {folder}")


def _synthesize(config, workdir: str) -> list[str]:
    from fergan.data import align
    from fergan.experiments import synthesize, train

    files = synthesize.input_files(_INPUT.value)
    setup = train.Setup(config, workdir)
    restored = setup.checkpoints.restore(setup.initial_state, step=_STEP.value, best=_BEST.value)
    editor = setup.editor(restored[0])
    if editor is None:
        raise ValueError(f"variant={config.variant} has no generator: nothing to synthesize.")
    written = synthesize.synthesize_files(
        editor,
        setup.model.image_size,
        setup.model.channels,
        setup.datasets.class_names,
        files,
        _OUTPUT.value or os.path.join(workdir, "synthesized"),
        # Input photos carry no landmark files: dlib when installed, per data.align.
        aligner=align.choose(
            align.resolve_mode(config.data.align, config.data.crop_face),
            have_files=False,
            margin=config.data.face_margin,
        ),
        expression=_EXPRESSION.value,
        intensities=tuple(float(a) for a in _INTENSITIES.value),
    )
    console.say(f"wrote {len(written)} files to {os.path.dirname(written[0])}")
    return written


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if _CONFIG.value is None or not _WORKDIR.value:
        fail("--config and --workdir are required.")
    start = time.time()
    workdir = os.path.expanduser(_WORKDIR.value)
    log_path = None
    try:
        # Both must act before anything starts the JAX backend.
        determinism.configure_from_flags(cpu_isa=_CONFIG.value.determinism.cpu_isa)
        distributed.initialize_from_flags()
        check_mode_inputs(_CONFIG.value, workdir, _MODE.value)
        os.makedirs(workdir, exist_ok=True)
        log_path = console.log_to_file(workdir)
        _header(_CONFIG.value, workdir, _MODE.value)
        run(_MODE.value, _CONFIG.value, workdir)
    except user_error_types() as error:
        if log_path:  # Before the log file exists, absl would print this on the terminal.
            logging.exception("fergan stopped")
        if _DEBUG.value:
            traceback.print_exc()
        fail(one_line(error))
    except Exception as error:
        if log_path:
            logging.exception("fergan failed")
        if _DEBUG.value:
            raise
        where = f" (traceback in {log_path})" if log_path else " (--debug shows the traceback)"
        fail(f"internal error {type(error).__name__}: {one_line(error)}{where}", code=1)
    logging.info("fergan finished in %.1f s", time.time() - start)


def entry_point() -> None:
    """Runs the CLI with quiet libraries and one-line flag errors."""
    console.quiet_libraries()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    entry_point()
