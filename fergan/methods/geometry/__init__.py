"""Geometry-guided pose-invariant FER (paper geometry_guided_pose_invariant_fer): a landmark
embedding E, an encoder-decoder generator G conditioned on target landmarks, discriminators on
(face, landmarks) pairs (D_att) and on the identity code (D_i), and a classifier C trained with
G end to end, then on faces rendered from a bank of landmark templates.

Networks of Table II (`networks.py`), the losses of Eqs. 3-9 (`losses.py`), the template bank
(`templates.py`), variants, hyper-parameters and the built model (`model.py`), the two-stage
iteration (`step.py`) and what evaluation reads (`evaluation.py`). Batches carry a face of the
same subject with its landmarks (`batch_features=("target",)`).
"""

from fergan import methods
from fergan.methods.base import Method
from fergan.methods.geometry import evaluation, model, step
from fergan.methods.geometry.model import VARIANTS

METHOD = methods.register(
    Method(
        name="geometry",
        variants=VARIANTS,
        build=model.build,
        attach_data=model.attach_data,
        init_state=step.init_state,
        train_step=step.train_step,
        stage_starts=step.stage_starts,
        evaluate_batch=evaluation.evaluate_batch,
        parameters=evaluation.parameters,
        editor=evaluation.editor,
        identity_features=evaluation.identity_features,
        write_samples=evaluation.write_samples,
        check_config=model.check_config,
        resume_keys=(
            "model.image_size",
            "model.channels",
            "model.width",
            "model.num_classes",
            "model.lightcnn_classes",
            "geometry.classifier",
        ),
        batch_features=("target",),
        edits_intensity=False,
        progress_metrics={
            "stage": "stage",
            "loss/g_total": "G",
            "loss/d_total": "D",
            "loss/r_cls": "C",
            "acc/r_real": "C acc",
        },
    )
)
