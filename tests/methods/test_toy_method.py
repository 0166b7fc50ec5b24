"""The method seam: a toy method defined here, a plain MLP classifier with no generator and no
identity network, goes through the shared machinery only (train, resume, evaluate, CV, several
devices) with `config.method = "toy"`. No shared file knows it exists."""

import dataclasses
import functools
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from fergan import methods
from fergan.evaluation import cv_metrics
from fergan.experiments import config as experiment_config
from fergan.experiments import cross_validate as cv
from fergan.experiments import train
from fergan.methods.base import Method
from tests.program.helpers import tiny_config

# ------------------------------------------------------------------------------- the toy method


class ConvNet(nn.Module):
    """Two strided 3x3 convolutions and two dense layers: (logits [B, K], feature [B, hidden])."""

    hidden: int
    num_classes: int

    @nn.compact
    def __call__(self, x):
        for channels in (8, 16):
            x = nn.relu(nn.Conv(channels, (3, 3), strides=2)(x))
        feature = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_classes)(feature), feature


@dataclasses.dataclass(frozen=True)
class ToyModel:
    image_size: int
    channels: int
    num_classes: int
    total_steps: int
    learning_rate: float
    hidden: int = 32
    pre_steps: int = 0

    @property
    def net(self) -> ConvNet:
        return ConvNet(self.hidden, self.num_classes)

    @property
    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.learning_rate)


@struct.dataclass
class ToyState:
    step: jax.Array
    params: dict
    opt_state: optax.OptState


def build(config, steps_per_epoch: int) -> ToyModel:
    return ToyModel(
        image_size=int(config.model.image_size),
        channels=int(config.model.channels),
        num_classes=int(config.model.num_classes),
        total_steps=round(float(config.train.max_epochs) * steps_per_epoch),
        learning_rate=float(config.optim.learning_rate),
    )


def init_state(model: ToyModel, seed: int, identity_params=None) -> ToyState:
    assert identity_params is None  # The toy has no identity network.
    x = jnp.zeros((1, model.image_size, model.image_size, model.channels))
    params = model.net.init(jax.random.PRNGKey(seed), x)["params"]
    return ToyState(step=jnp.int32(0), params=params, opt_state=model.optimizer.init(params))


def train_step(model: ToyModel, state: ToyState, batch, axis_name=None):
    def loss_fn(params):
        logits, _ = model.net.apply({"params": params}, batch["x"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == batch["y"])

    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if axis_name is not None:
        grads, loss, acc = jax.lax.pmean((grads, loss, acc), axis_name)
    updates, opt_state = model.optimizer.update(grads, state.opt_state, state.params)
    new = state.replace(
        step=state.step + 1, params=optax.apply_updates(state.params, updates), opt_state=opt_state
    )
    return new, {"loss/ce": loss, "acc/train": acc}


@functools.partial(jax.jit, static_argnums=0)
def evaluate_batch(model: ToyModel, state: ToyState, x, y):
    logits, feature = model.net.apply({"params": state.params}, x)
    return {"prediction": jnp.argmax(logits, -1), "feature": feature}


TOY = methods.register(
    Method(
        name="toy",
        variants={"PLAIN": None},
        build=build,
        init_state=init_state,
        train_step=train_step,
        evaluate_batch=evaluate_batch,
        parameters=lambda state: {"convnet": state.params},
        resume_keys=("model.image_size", "model.channels", "model.num_classes"),
        progress_metrics={"loss/ce": "CE"},
    )
)

# ------------------------------------------------------------------------------------ the runs

# 8 subjects in 2 folds: 4 training subjects x 7 classes x 3 frames = 84 frames, batch 16, so
# 5 steps per epoch; 28 held-out faces (4 subjects x 7 peak frames).
EPOCHS = 16
STEPS = 5 * EPOCHS
STOP = 37  # Between two checkpoints (every 20 steps).


def toy_config(data_dir: str, num_devices: int = 1):
    config = tiny_config(data_dir=data_dir)
    config.method = "toy"
    config.variant = "PLAIN"
    config.data.num_subjects = 8
    config.train.batch_size = 16
    config.optim.learning_rate = 3e-3
    config.train.max_epochs = EPOCHS
    config.train.checkpoint_every = 20
    config.train.log_every = 5
    config.train.num_devices = num_devices
    return config


@pytest.fixture(scope="module")
def full_run(data_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("full"))
    return workdir, train.train_and_evaluate(toy_config(data_dir), workdir)


def final_state(workdir, config):
    setup = train.Setup(config, workdir)
    try:
        return setup.checkpoints.restore(setup.initial_state)
    finally:
        setup.checkpoints.close()


def test_trains_to_the_end_and_beats_chance(full_run):
    workdir, _ = full_run
    with open(os.path.join(workdir, "summary.json")) as f:
        on_disk = json.load(f)
    assert on_disk["method"] == "toy" and on_disk["variant"] == "PLAIN"
    assert on_disk["steps"] == STEPS and on_disk["stage1_steps"] == 0
    # Held-out faces of 4 unseen subjects, 7 classes: chance is 1/7 (4 / 28 faces). Seeds 0-2
    # give 8-9 of 28 right; the bound is 7.
    assert on_disk["eval"]["num_examples"] == 28
    assert on_disk["eval"]["accuracy"] >= 1.5 * on_disk["chance_accuracy"]
    # The training loss (averaged over every 5 steps) starts near ln 7 and falls by a third.
    losses = [value for _, value in cv_metrics.read_scalars(workdir)["train/loss/ce"]]
    assert len(losses) == STEPS // 5
    assert np.mean(losses[:2]) > 1.8 and np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2])


def test_stopped_and_resumed_run_is_bit_identical(full_run, data_dir, tmp_path):
    full_dir, full_summary = full_run
    config = toy_config(data_dir)
    stopped = train.train_and_evaluate(config, str(tmp_path), stop_after=STOP)
    assert stopped["stopped_at"] == STOP
    resumed = train.train_and_evaluate(config, str(tmp_path))
    assert resumed["resumed_from_step"] == STOP
    assert resumed["eval"] == full_summary["eval"]
    (a, data_a), (b, data_b) = final_state(full_dir, config), final_state(str(tmp_path), config)
    assert int(a.step) == int(b.step) == STEPS and data_a == data_b
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    # step, 8 parameters (4 layers x kernel, bias), Adam's count and its 8 mu and 8 nu.
    assert len(leaves_a) == len(leaves_b) == 26
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        assert np.array_equal(np.asarray(x), np.asarray(y))


def test_evaluate_checkpoint_reports_the_training_accuracy(full_run, data_dir):
    workdir, summary = full_run
    evaluated = train.evaluate_checkpoint(toy_config(data_dir), workdir)
    path = os.path.join(workdir, "evaluations", f"step_{STEPS}.json")
    assert evaluated["path"] == path
    with open(path) as f:
        on_disk = json.load(f)
    assert on_disk["method"] == "toy" and on_disk["steps"] == STEPS
    assert on_disk["eval"]["accuracy"] == summary["eval"]["accuracy"]


def test_cross_validates_over_two_folds(full_run, data_dir, tmp_path):
    _, summary = full_run
    config = toy_config(data_dir)
    config.identity.pretrain = True  # The demo's setting: no LightCNN-29 to train for the toy.
    payload = cv.cross_validate(config, str(tmp_path), ["PLAIN"])
    assert not os.path.exists(os.path.join(tmp_path, "identity"))
    with open(os.path.join(tmp_path, cv.CV_JSON)) as f:
        assert json.load(f) == json.loads(json.dumps(payload))
    plain = payload["variants"]["PLAIN"]
    assert plain["complete"] and plain["folds_finished"] == [0, 1]
    accuracy = plain["accuracy_per_fold"]
    # Fold 0 is the full run's own training (same config, data and seed).
    assert accuracy[0] == summary["eval"]["accuracy"]
    assert 0.0 <= accuracy[1] <= 1.0
    assert plain["accuracy_mean"] == pytest.approx(np.mean(accuracy))
    for name in ("psnr", "ssim", "verification_rate"):
        assert plain[f"{name}_per_fold"] == [None, None] and plain[f"{name}_mean"] is None
    for fold in (0, 1):
        with open(os.path.join(cv.fold_dir(str(tmp_path), "PLAIN", fold), cv.FOLD_RESULT)) as f:
            result = json.load(f)
        assert result["synthesis"] is None and result["verification"] is None
        assert result["accuracy"] == accuracy[fold]


def test_identity_settings_pass_by_a_method_without_an_identity_network(data_dir, tmp_path):
    config = toy_config(data_dir)
    config.identity.pretrain = True
    # The program's config resolution trains no LightCNN-29 for the toy.
    resolved = experiment_config.resolve_config(config, str(tmp_path), "train")
    assert resolved.identity.weights == "" and not os.listdir(tmp_path)
    # Weights that do not exist are neither checked nor loaded (init_state asserts None).
    config.identity.weights = str(tmp_path / "no_such_identity_weights")
    config.train.max_epochs = 1
    assert train.train_and_evaluate(config, str(tmp_path / "run"))["steps"] == 5


@pytest.mark.parametrize("mode", ["shard_map", "pmap"])
def test_two_devices_give_the_parameters_of_one(full_run, data_dir, tmp_path, mode):
    full_dir, _ = full_run
    config = toy_config(data_dir, num_devices=2)
    config.train.parallel = mode
    train.train_and_evaluate(config, str(tmp_path))
    one, two = final_state(full_dir, config)[0], final_state(str(tmp_path), config)[0]
    assert int(one.step) == int(two.step) == STEPS
    for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(two), strict=True):
        # Not bit-identical: the batch mean is summed in another order (measured: at most 5e-7).
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=5e-6)
