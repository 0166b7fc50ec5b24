"""ECGAN's training iteration as a pure per-device function. Stage 1: one update of D_X and D_Y
against the current generators' faces, then one joint update of G_XY and G_YX (Eq. 6). Stage 2:
one update of each recognizer (model.py), the generators frozen.

Batch: x [B, S, S, c] expressive faces (domain Y) with y [B] and their face masks `mask`
[B, S, S, 1]; `x_neutral` [B, S, S, c] neutral faces (domain X) with `mask_neutral`; optional
slot [B]. The neutral face of slot i is asked for z_i = y_i. Gradients and metrics are averaged
with lax.pmean over `axis_name`; nothing here is random but the recognizers' dropout, keyed per
sample, so the result does not depend on the device count.
"""

import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from fergan.methods.ecgan import losses
from fergan.methods.ecgan.model import EcganModel
from fergan.models import LightCNN29, to_lightcnn_input
from fergan.training import recognition, stages
from fergan.training.collectives import pmean, sample_indices
from fergan.training.optim import NetState, adam_step, init_net
from fergan.types import Batch, Metrics, PyTree


@flax.struct.dataclass
class EcganState:
    """The two generators and two discriminators with their Adam states, the two recognizers
    (`r` on real + generated faces, `r_original` on real faces only), the frozen LightCNN-29
    (`identity`), the step and the base key."""

    step: jax.Array
    rng: jax.Array
    g_xy: NetState
    g_yx: NetState
    d_x: NetState
    d_y: NetState
    r: NetState
    r_original: NetState
    identity: PyTree


def init_state(model: EcganModel, seed: int, identity_params: PyTree | None = None) -> EcganState:
    """Fresh networks from keys derived from `seed`; `identity_params`: the pretrained
    LightCNN-29 (None: drawn, untrained)."""
    size, c, k = model.image_size, model.channels, model.num_classes
    x, z = jnp.zeros((1, size, size, c)), jnp.zeros((1, k))
    keys = jax.random.split(jax.random.PRNGKey(seed), 8)
    net = lambda params: init_net(params, model.hp.b1, model.hp.b2)
    if identity_params is None:
        grey = jnp.zeros((1, size, size, 1))
        identity_params = model.identity.init(keys[6], grey, method=LightCNN29.features)["params"]
    recognizer = lambda key: net(
        recognition.init_recognizer(model.recognizer, model.identity, identity_params, key, x)
    )
    return EcganState(
        step=jnp.zeros((), jnp.int32),
        rng=keys[7],
        g_xy=net(model.generator.init(keys[0], x, z)["params"]),
        g_yx=net(model.generator.init(keys[1], x, z)["params"]),
        d_x=net(model.d_x.init(keys[2], x)["params"]),
        d_y=net(model.d_y.init(keys[3], x, z)["params"]),
        r=recognizer(keys[4]),
        r_original=recognizer(keys[5]),
        identity=identity_params,
    )


def _domains(model: EcganModel, batch: Batch):
    """(x, mask of x, y, mask of y, z): neutral faces, expressive faces, one-hot z = z_y."""
    z = jax.nn.one_hot(batch["y"], model.num_classes)
    return batch["x_neutral"], batch["mask_neutral"], batch["x"], batch["mask"], z


def _update(model: EcganModel, net: NetState, grads, lr, axis_name) -> NetState:
    return adam_step(net, pmean(grads, axis_name), lr, model.hp.b1, model.hp.b2)


def discriminator_objective(model: EcganModel, d_params, x, y, z, fake_x, fake_y):
    """Eq. 1 for both discriminators: D_Y on (y, z_y) against (G_XY(x, z), z), D_X on x against
    G_YX(y, z_y). `d_params` = {'d_x': ..., 'd_y': ...}."""
    d_y = lambda im: model.d_y.apply({"params": d_params["d_y"]}, im, z)
    d_x = lambda im: model.d_x.apply({"params": d_params["d_x"]}, im)
    loss_y = losses.lsgan_discriminator_loss(d_y(y), d_y(fake_y))
    loss_x = losses.lsgan_discriminator_loss(d_x(x), d_x(fake_x))
    total = loss_x + loss_y
    return total, {"loss/d_x": loss_x, "loss/d_y": loss_y, "loss/d_total": total}


def d_update(model: EcganModel, state: EcganState, batch: Batch, axis_name):
    """One update of both discriminators against the current generators' faces (constants)."""
    x, _, y, _, z = _domains(model, batch)
    fake_y = lax.stop_gradient(model.generator.apply({"params": state.g_xy.params}, x, z))
    fake_x = lax.stop_gradient(model.generator.apply({"params": state.g_yx.params}, y, z))
    d_params = {"d_x": state.d_x.params, "d_y": state.d_y.params}
    objective = lambda p: discriminator_objective(model, p, x, y, z, fake_x, fake_y)
    grads, metrics = jax.grad(objective, has_aux=True)(d_params)
    lr = model.hp.learning_rate_at(state.step)
    d_x = _update(model, state.d_x, grads["d_x"], lr, axis_name)
    d_y = _update(model, state.d_y, grads["d_y"], lr, axis_name)
    return state.replace(d_x=d_x, d_y=d_y), metrics


def phi(model: EcganModel, state: EcganState, faces: jax.Array) -> jax.Array:
    """The context loss's features: the frozen LightCNN-29 trunk, [B, S/8, S/8, 192 width]."""
    return model.identity.apply(
        {"params": state.identity}, to_lightcnn_input(faces), method=LightCNN29.trunk
    )


def generator_objective(
    model: EcganModel, state: EcganState, g_params, batch: Batch
) -> tuple[jax.Array, Metrics]:
    """Eq. 6: L_lsgan (both directions) + lambda_cyc L_cyc + lambda_context L_context +
    lambda_id L_identity + lambda_mask L_mask, the discriminators and LightCNN as they are.
    `g_params` = {'g_xy': ..., 'g_yx': ...}."""
    hp, v = model.hp, model.hp.variant
    x, m_x, y, m_y, z = _domains(model, batch)
    g_xy = lambda im, code: model.generator.apply({"params": g_params["g_xy"]}, im, code)
    g_yx = lambda im, code: model.generator.apply({"params": g_params["g_yx"]}, im, code)
    fake_y, fake_x = g_xy(x, z), g_yx(y, z)
    x_cycled, y_cycled = g_yx(fake_y, z), g_xy(fake_x, z)
    adv = losses.lsgan_generator_loss(
        model.d_y.apply({"params": state.d_y.params}, fake_y, z)
    ) + losses.lsgan_generator_loss(model.d_x.apply({"params": state.d_x.params}, fake_x))
    terms = {
        "g_adv": (1.0, adv),
        "cycle": (hp.lambda_cyc, losses.cycle_loss(x, x_cycled, y, y_cycled)),
        "identity": (hp.lambda_id, losses.identity_loss(x, g_yx(x, z), y, g_xy(y, z))),
    }
    if v.context:
        features = lambda im: phi(model, state, im)
        context = losses.context_loss(
            lax.stop_gradient(features(x)), features(x_cycled)
        ) + losses.context_loss(lax.stop_gradient(features(y)), features(y_cycled))
        terms["context"] = (hp.lambda_context, context)
    if v.mask:
        cycle_x = lambda im: g_yx(g_xy(im, z), z)
        cycle_y = lambda im: g_xy(g_yx(im, z), z)
        mask = losses.mask_loss(hp.mask_loss, x, x_cycled, m_x, cycle_x) + losses.mask_loss(
            hp.mask_loss, y, y_cycled, m_y, cycle_y
        )
        terms["mask"] = (hp.lambda_mask, mask)
    total = sum(w * value for w, value in terms.values())
    return total, {f"loss/{k}": value for k, (_, value) in terms.items()} | {"loss/g_total": total}


def g_update(model: EcganModel, state: EcganState, batch: Batch, axis_name):
    """One joint update of G_XY and G_YX; LightCNN-29 is never differentiated."""
    g_params = {"g_xy": state.g_xy.params, "g_yx": state.g_yx.params}
    objective = lambda p: generator_objective(model, state, p, batch)
    grads, metrics = jax.grad(objective, has_aux=True)(g_params)
    lr = model.hp.learning_rate_at(state.step)
    g_xy = _update(model, state.g_xy, grads["g_xy"], lr, axis_name)
    g_yx = _update(model, state.g_yx, grads["g_yx"], lr, axis_name)
    return state.replace(g_xy=g_xy, g_yx=g_yx), metrics | {"lr": lr}


def gan_update(model: EcganModel, state: EcganState, batch: Batch, axis_name):
    """Stage 1: the discriminators' update, then the generators'."""
    state, d_metrics = d_update(model, state, batch, axis_name)
    state, g_metrics = g_update(model, state, batch, axis_name)
    return state, d_metrics | g_metrics


def recognizer_update(model: EcganModel, state: EcganState, batch: Batch, axis_name):
    """Stage 2: `r` on the real faces and G_XY(x_neutral, z) labelled z, `r_original` on the
    real faces alone; the same dropout keys for the real faces of both."""
    hp = model.hp
    x, _, y, _, z = _domains(model, batch)
    generated = model.generator.apply({"params": state.g_xy.params}, x, z)
    lr = hp.recognizer_rate_at(state.step)

    def update(r: NetState, faces, labels):
        return recognition.recognizer_update(
            model.recognizer,
            model.identity,
            state.identity,
            r,
            faces,
            labels,
            key=recognition.dropout_key(state.rng, state.step),
            indices=sample_indices(batch, axis_name),
            learning_rate=lr,
            betas=(hp.b1, hp.b2),
            axis_name=axis_name,
        )

    labels = batch["y"]
    r, metrics = update(state.r, [y, generated], [labels, labels])
    r_original, original = update(state.r_original, [y], [labels])
    original = {"loss/r_original_cls": original["loss/r_cls"],
                "acc/r_original_real": original["acc/r_real"]}  # fmt: skip
    return state.replace(r=r, r_original=r_original), metrics | original | {"lr": lr}


def train_step(
    model: EcganModel, state: EcganState, batch: Batch, axis_name: str | None = None, *, stage: int
) -> tuple[EcganState, Metrics]:
    """One iteration of stage `stage` (0: generators and discriminators, 1: the recognizers),
    the metrics averaged over devices, every stage's keys present (`stages.run_stage`)."""
    updates = (
        lambda st: gan_update(model, st, batch, axis_name),
        lambda st: recognizer_update(model, st, batch, axis_name),
    )
    state, metrics = stages.run_stage(updates, stage, state)
    return state.replace(step=state.step + 1), pmean(metrics, axis_name)


def stage_starts(model: EcganModel) -> tuple[int]:
    """The recognizers' stage starts after the GAN's iterations."""
    return (model.hp.gan_steps,)
