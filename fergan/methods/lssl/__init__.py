"""LSSL: attribute-guided expression synthesis with a landmark-heatmap side image (paper A) and
its face-parsing loss (paper B), then a recognizer trained on real and synthetic faces.

Networks of A's Tables I-II (`networks.py`), the losses (`losses.py`), the face parser of L_p
and its pretraining on the renderer's part masks (`parser.py`), variants, hyper-parameters and
the built model (`model.py`), the two-stage training iteration (`step.py`) and what evaluation
reads (`evaluation.py`). The heatmap is `fergan.data.heatmaps`, which the training pipeline adds
to a batch as `s` (`batch_features=("side",)`).
"""

from fergan import methods
from fergan.methods.base import Method
from fergan.methods.lssl import evaluation, model, parser, step
from fergan.methods.lssl.model import VARIANTS


def _prepare(config, folder: str) -> None:
    """`lssl.parser_weights` for a variant with L_p (pretrained into `folder` when missing)."""
    if VARIANTS[config.variant].parsing:
        config.lssl.parser_weights = parser.ensure_parser(config, folder)


def _check_config(config) -> None:
    """LSSL's keys that can be checked before the data and the parser exist."""
    model.make_hparams(config, steps_per_epoch=1)
    model.check_networks(config)
    parser.parser_settings(config)


METHOD = methods.register(
    Method(
        name="lssl",
        variants=VARIANTS,
        build=model.build,
        init_state=step.init_state,
        train_step=step.train_step,
        stage_starts=step.stage_starts,
        evaluate_batch=evaluation.evaluate_batch,
        parameters=evaluation.parameters,
        editor=evaluation.editor,
        identity_features=evaluation.identity_features,
        write_samples=evaluation.write_samples,
        check_config=_check_config,
        prepare=_prepare,
        resume_keys=(
            "model.image_size",
            "model.channels",
            "model.width",
            "model.num_classes",
            "model.lightcnn_classes",
            "lssl.recognizer",
        ),
        batch_features=("side",),
        edits_intensity=False,
        progress_metrics={
            "stage": "stage",
            "loss/g_total": "G",
            "loss/d_total": "D",
            "loss/r_cls": "R",
            "acc/r_real": "R acc",
        },
    )
)
