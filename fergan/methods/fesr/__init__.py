"""FESR: joint expression synthesis (FESGAN) and recognition (R) with the intra-class loss and
real data-guided back-propagation (SPEC). Everything FESR-specific lives in this package."""

from fergan import methods
from fergan.methods.base import Method
from fergan.methods.fesr import evaluation, hparams, model, samples, state, step
from fergan.methods.fesr.variants import VARIANTS


def _init_state(m: model.FesrModel, seed: int, identity_params=None) -> state.TrainState:
    return state.init_state(m.nets, seed, m.hp.b1, m.hp.b2, identity_params=identity_params)


def _train_step(m: model.FesrModel, train_state, batch, axis_name=None):
    return step.train_step(m.nets, m.hp, train_state, batch, axis_name)


METHOD = methods.register(
    Method(
        name="fesr",
        variants=VARIANTS,
        build=model.build,
        init_state=_init_state,
        train_step=_train_step,
        evaluate_batch=evaluation.evaluate_batch,
        parameters=evaluation.parameters,
        editor=evaluation.editor,
        synthetic_faces=evaluation.synthetic_faces,
        identity_features=evaluation.identity_features,
        write_samples=samples.write_samples,
        check_config=model.check_config,
        config_batch_features=hparams.paired_features,
        resume_keys=(
            "model.image_size",
            "model.channels",
            "model.width",
            "model.generator_width",
            "model.latent_dim",
            "model.num_classes",
            "model.lightcnn_classes",
            "recognizer.trunk",
        ),
        resume_defaults={"recognizer.trunk": "frozen", "model.generator_width": 0.0},
        # Fig. 9 compares the feature spaces without and with the intra-class loss.
        tsne_first=("FESR_JL-IL", "FESR_JL"),
        progress_metrics={
            "stage": "stage",
            "loss/g_total": "G",
            "loss/dimg_total": "Dimg",
            "loss/r_cls": "R",
            "acc/r_real": "R acc",
        },
    )
)
