"""ECGAN: the Expression Conditional GAN (paper ecgan), a conditional CycleGAN between neutral
and expressive faces with a face-mask loss, then recognizers trained on real and on real plus
generated faces (the paper's Table 2).

Networks (`networks.py`), losses (`losses.py`), variants, hyper-parameters and the built model
(`model.py`), the two-stage training iteration (`step.py`) and what evaluation reads
(`evaluation.py`). Its batches carry a neutral face and the face masks
(`batch_features=("mask", "neutral")`, from data.neutral_first_frames).
"""

from fergan import methods
from fergan.methods.base import Method
from fergan.methods.ecgan import evaluation, model, step
from fergan.methods.ecgan.model import VARIANTS

METHOD = methods.register(
    Method(
        name="ecgan",
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
        check_config=model.check_config,
        extra_metrics=evaluation.extra_metrics,
        resume_keys=(
            "model.image_size",
            "model.channels",
            "model.width",
            "model.num_classes",
            "model.lightcnn_classes",
            "ecgan.generator",
        ),
        batch_features=("mask", "neutral"),
        edits_intensity=False,
        edits_from_neutral=True,
        progress_metrics={
            "stage": "stage",
            "loss/g_total": "G",
            "loss/d_total": "D",
            "loss/r_cls": "R",
            "acc/r_real": "R acc",
        },
    )
)
