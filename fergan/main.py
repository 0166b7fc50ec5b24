"""Entry point: `python -m fergan.main --config configs/<name>.py --workdir <dir> [--mode ...]`.

Modes: train (default; resumes from the workdir), evaluate (a saved checkpoint), synthesize
(re-render image files), pretrain_identity (train LightCNN-29 on the dataset's subject ids),
cross_validate (k folds x --variants, resumable; --fold runs one fold), aggregate (collect folds).
Override any config key with `--config.<key>=<value>`.
"""

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from fergan import determinism
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


def run(mode: str, config, workdir: str) -> dict | list:
    """Dispatch one mode; returns its result (summary dict or written paths)."""
    # Imported here so `--help` stays fast and flags parse before JAX starts.
    from fergan import train

    if mode == "train":
        if config.identity.pretrain and not config.identity.weights:
            config.identity.weights = _pretrained_identity(config, workdir)
        summary = train.train_and_evaluate(config, workdir)
        print(f"Summary: {os.path.join(workdir, 'summary.json')}")
        print(f"Samples: {os.path.join(workdir, 'samples')}")
        print(json.dumps(summary["eval"]))
        return summary
    if mode == "evaluate":
        summary = train.evaluate_checkpoint(config, workdir, _STEP.value, _BEST.value)
        print(json.dumps(summary["eval"]))
        return summary
    if mode == "pretrain_identity":
        from fergan.identity.pretrain import pretrain_identity

        result = pretrain_identity(config, workdir)
        print(json.dumps(result))
        return result
    if mode == "synthesize":
        return _synthesize(config, workdir)
    if mode in ("cross_validate", "aggregate"):
        from fergan.evaluation import cross_validate

        if mode == "cross_validate":
            result = cross_validate.cross_validate(
                config, workdir, _VARIANTS.value, _FOLD.value, _pretrained_identity
            )
        else:
            # Default: every variant with a finished fold, not only the config's.
            result = cross_validate.aggregate(config, workdir, _VARIANTS.value)
        with open(os.path.join(workdir, cross_validate.CV_MARKDOWN)) as f:
            print(f.read())
        print(f"Results: {os.path.join(workdir, cross_validate.CV_JSON)}")
        return result
    raise ValueError(f"--mode={mode!r} is unknown; allowed: {MODES}")


def _pretrained_identity(config, workdir: str) -> str:
    """`identity.pretrain`: reuse `<workdir>/identity_weights` or train it first."""
    from fergan.identity.pretrain import pretrain_identity
    from fergan.identity.weights import PRETRAINED_DIRNAME

    path = os.path.join(workdir, PRETRAINED_DIRNAME)
    if not os.path.isdir(path):
        logging.info("identity.pretrain: training the identity network into %s", path)
        pretrain_identity(config, workdir)
    return os.path.abspath(path)


def _synthesize(config, workdir: str) -> list[str]:
    from fergan import synthesize, train
    from fergan.data import align

    if not _INPUT.value:
        raise app.UsageError("--mode=synthesize needs --input (an image file or a folder).")
    files = synthesize.input_files(_INPUT.value)
    if config.identity.pretrain and not config.identity.weights:
        config.identity.weights = _pretrained_identity(config, workdir)
    setup = train.Setup(config, workdir)
    restored = setup.checkpoints.restore(setup.initial_state, step=_STEP.value, best=_BEST.value)
    if restored is None:
        raise FileNotFoundError(f"No checkpoint in {workdir} to synthesize with.")
    written = synthesize.synthesize_files(
        setup.nets,
        restored[0],
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
    print(f"Wrote {len(written)} files to {os.path.dirname(written[0])}")
    return written


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        # Both must act before anything starts the JAX backend.
        determinism.configure_from_flags()
        distributed.initialize_from_flags()
        run(_MODE.value, _CONFIG.value, _WORKDIR.value)
    except Exception as error:  # Report a clear one-line cause, then the traceback in the log.
        from fergan.data.preprocess import DataError
        from fergan.train import NonFiniteLossError

        if isinstance(error, ValueError | FileNotFoundError | DataError | NonFiniteLossError):
            logging.exception("fergan failed")
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)
        raise


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
