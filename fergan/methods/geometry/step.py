"""Geometry's training iteration as a pure per-device function (model.py has the stages).

Stage 1, end to end (Eq. 10): one update of D_att and D_i against the current G (Eqs. 3-4),
then one joint update of G = (G_enc, G_dec) and E on
  lambda_1 L_att + lambda_2 L_i + lambda_3 L_cls(x') + L_con + lambda_4 L_gr + lambda_5 L_tv,
then one update of C on the real faces and the rendered x' (Eq. 5; not in GEO-No_E2E, whose G
never sees C). Stage 2: G and E frozen (E normalises with its running statistics); C on the
real faces and `synthetic_per_real` renders of each with templates of the bank (not in
GEO-No_SynFI, which keeps to real faces).

Batch: x [B, S, S, c], y [B], the same subject's `x_target` [B, S, S, c] with landmarks
`g_target` [B, 136] and label `y_t` [B] (the 'target' batch feature); optional slot [B].
Batch norm (E, D_att, D_i) takes its moments over `axis_name`, gradients and metrics are
averaged with lax.pmean over it, and every random draw (the prior of D_i, C's dropout, the
templates of stage 2) is keyed per sample: the result does not depend on the device count.
"""

import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from fergan import losses as shared_losses
from fergan.methods.geometry import losses
from fergan.methods.geometry.model import GeometryModel
from fergan.methods.geometry.networks import IDENTITY_CODE, NUM_LANDMARK_COORDS
from fergan.models import LightCNN29
from fergan.training import recognition, stages
from fergan.training.collectives import pmean, sample_indices
from fergan.training.optim import NetState, adam_step, init_net
from fergan.types import Batch, Metrics, PyTree

PAPER_IMAGE_SIZE = 224  # Table IX's noise is in pixels at this size.
# fold_in tags of the iteration's draws.
PRIOR_TAG, DROPOUT_TAG, TEMPLATE_TAG = 1, 2, 3
NOISE_TAG = 1  # Folded into a sample's template key.


@flax.struct.dataclass
class GeometryState:
    """E, G ({'encoder', 'decoder'}), D_att, D_i and C with their Adam states; the batch-norm
    running statistics of E, D_att, D_i and C (the ResNet-50; {} for R); the frozen LightCNN-29
    (`identity`); the step and the base key."""

    step: jax.Array
    rng: jax.Array
    e: NetState
    e_stats: PyTree
    g: NetState
    d_att: NetState
    d_att_stats: PyTree
    d_i: NetState
    d_i_stats: PyTree
    c: NetState
    c_stats: PyTree
    identity: PyTree


def init_state(
    model: GeometryModel, seed: int, identity_params: PyTree | None = None
) -> GeometryState:
    """Fresh networks from keys derived from `seed`; `identity_params`: the pretrained
    LightCNN-29 (None: drawn, untrained)."""
    size, c = model.image_size, model.channels
    x = jnp.zeros((1, size, size, c))
    g = jnp.zeros((1, NUM_LANDMARK_COORDS))
    keys = jax.random.split(jax.random.PRNGKey(seed), 8)
    net = lambda params: init_net(params, model.hp.b1, model.hp.b2)
    if identity_params is None:
        grey = jnp.zeros((1, size, size, 1))
        identity_params = model.identity.init(keys[5], grey, method=LightCNN29.features)["params"]
    e = model.embedding.init(keys[0], g, False)
    code = jnp.zeros((1, e["params"]["fc2"]["bias"].shape[0]))
    f = jnp.zeros((1, IDENTITY_CODE))
    g_params = {
        "encoder": model.encoder.init(keys[1], x)["params"],
        "decoder": model.decoder.init(keys[2], f, code)["params"],
    }
    d_att = model.d_att.init(keys[3], x, code, False)
    d_i = model.d_i.init(keys[4], f, False)
    if recognition.on_trunk(model.recognizer):
        r_params = recognition.init_recognizer(
            model.recognizer, model.identity, identity_params, keys[6], x
        )
        c = {"params": r_params, "batch_stats": {}}
    else:
        c = model.recognizer.init(keys[6], x, False)
    return GeometryState(
        step=jnp.zeros((), jnp.int32),
        rng=keys[7],
        e=net(e["params"]),
        e_stats=e["batch_stats"],
        g=net(g_params),
        d_att=net(d_att["params"]),
        d_att_stats=d_att["batch_stats"],
        d_i=net(d_i["params"]),
        d_i_stats=d_i["batch_stats"],
        c=net(c["params"]),
        c_stats=c["batch_stats"],
        identity=identity_params,
    )


def _normed(module, params, stats, *args, train: bool, axis_name):
    """(output, new running statistics) of a batch-norm network: batch moments (over
    `axis_name`) and updated statistics when `train`, else the running ones, unchanged."""
    variables = {"params": params, "batch_stats": stats}
    if not train:
        return module.apply(variables, *args, False), stats
    out, updated = module.apply(variables, *args, True, axis_name, mutable=["batch_stats"])
    return out, updated["batch_stats"]


def embed(model: GeometryModel, e_params, e_stats, g, train: bool, axis_name=None):
    """E on landmarks g [B, 136]: ((code f(g) [B, 32], reconstruction [B, 136]), statistics)."""
    return _normed(model.embedding, e_params, e_stats, g, train=train, axis_name=axis_name)


def render(model: GeometryModel, g_params, x: jax.Array, code: jax.Array) -> tuple:
    """(x' = G_dec([f(x), code]) [B, S, S, c], the identity code f(x) [B, 50])."""
    f = model.encoder.apply({"params": g_params["encoder"]}, x)
    return model.decoder.apply({"params": g_params["decoder"]}, f, code), f


def classify(
    model: GeometryModel,
    state: GeometryState,
    c_params,
    x,
    keep=None,
    train: bool = False,
    axis_name=None,
) -> tuple[jax.Array, jax.Array, PyTree]:
    """C on faces x [B, S, S, c]: (feature [B, F], logits [B, K], C's batch-norm statistics).
    R (`recognition.recognize`: the frozen LightCNN-29 trunk, gradients reaching x: G's side of
    Eq. 5) drops features with `keep` [B, F]; the ResNet-50 takes its batch's moments and
    updated statistics when `train`, else its running ones."""
    if not recognition.on_trunk(model.recognizer):
        (feature, logits), stats = _normed(
            model.recognizer, c_params, state.c_stats, x, train=train, axis_name=axis_name
        )
        return feature, logits, stats
    feature, logits = recognition.recognize(
        model.recognizer, model.identity, state.identity, c_params, x, keep
    )
    return feature, logits, state.c_stats


def _key(state: GeometryState, tag: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(state.rng, state.step), tag)


def _prior(state: GeometryState, indices: jax.Array) -> jax.Array:
    """D_i's prior samples U(-1, 1)^50, sample i's from its global index: [B, 50]."""
    key = _key(state, PRIOR_TAG)
    draw = lambda i: jax.random.uniform(jax.random.fold_in(key, i), (IDENTITY_CODE,), minval=-1.0)
    return jax.vmap(draw)(indices)


def _update(model: GeometryModel, net: NetState, grads, lr, axis_name) -> NetState:
    return adam_step(net, pmean(grads, axis_name), lr, model.hp.b1, model.hp.b2)


def d_update(model: GeometryModel, state: GeometryState, batch: Batch, axis_name):
    """One update of D_att on real (x_t, f(g_t)) against fake (x', f(g_t)) pairs (Eq. 3) and of
    D_i on prior samples against f(x) (Eq. 4); G and E are constants here (E's statistics are
    updated by the G step only)."""
    (code, _), _ = embed(model, state.e.params, state.e_stats, batch["g_target"], True, axis_name)
    code = lax.stop_gradient(code)
    fake, f = jax.tree.map(lax.stop_gradient, render(model, state.g.params, batch["x"], code))
    prior = _prior(state, sample_indices(batch, axis_name))
    b = code.shape[0]

    def objective(params):
        att, att_stats = _normed(
            model.d_att,
            params["d_att"],
            state.d_att_stats,
            jnp.concatenate([batch["x_target"], fake]),
            jnp.concatenate([code, code]),
            train=True,
            axis_name=axis_name,
        )
        ident, i_stats = _normed(
            model.d_i,
            params["d_i"],
            state.d_i_stats,
            jnp.concatenate([prior, f]),
            train=True,
            axis_name=axis_name,
        )
        loss_att = losses.discriminator_loss(att[:b], att[b:])
        loss_i = losses.discriminator_loss(ident[:b], ident[b:])
        metrics = {"loss/d_att": loss_att, "loss/d_i": loss_i, "loss/d_total": loss_att + loss_i}
        return loss_att + loss_i, (metrics, att_stats, i_stats)

    params = {"d_att": state.d_att.params, "d_i": state.d_i.params}
    grads, (metrics, att_stats, i_stats) = jax.grad(objective, has_aux=True)(params)
    lr = model.hp.learning_rate
    return state.replace(
        d_att=_update(model, state.d_att, grads["d_att"], lr, axis_name),
        d_i=_update(model, state.d_i, grads["d_i"], lr, axis_name),
        d_att_stats=att_stats,
        d_i_stats=i_stats,
    ), metrics


def generator_objective(
    model: GeometryModel, state: GeometryState, params, batch: Batch, axis_name
):
    """Eq. 10 for G and E, `params` = {'g': ..., 'e': ...}; the discriminators and C as they
    are (their batch norms use the batch's moments, their statistics left unchanged). Returns
    (total, (metrics, E's new statistics, x'))."""
    hp = model.hp
    x, g_t = batch["x"], batch["g_target"]
    (code, g_hat), e_stats = embed(model, params["e"], state.e_stats, g_t, True, axis_name)
    fake, f = render(model, params["g"], x, code)
    (att, _), (ident, _) = (
        _normed(
            model.d_att,
            state.d_att.params,
            state.d_att_stats,
            fake,
            lax.stop_gradient(code),
            train=True,
            axis_name=axis_name,
        ),
        _normed(model.d_i, state.d_i.params, state.d_i_stats, f, train=True, axis_name=axis_name),
    )
    target = x if hp.con_target == "input" else batch["x_target"]
    terms = {
        "g_att": (hp.lambda_att, losses.generator_adversarial_loss(att)),
        "g_i": (hp.lambda_i, losses.generator_adversarial_loss(ident)),
        "con": (hp.lambda_con, losses.content_loss(target, fake)),
        "gr": (hp.lambda_gr, losses.geometry_reconstruction_loss(g_t, g_hat)),
        "tv": (hp.lambda_tv, losses.total_variation(fake)),
    }
    if hp.variant.end_to_end:
        # C normalises with the batch's moments (its statistics move in its own update only).
        logits = classify(model, state, state.c.params, fake, train=True, axis_name=axis_name)[1]
        terms["g_cls"] = (
            hp.lambda_cls,
            losses.smoothed_cross_entropy(logits, batch["y_t"], hp.smoothing),
        )
    total = sum(w * value for w, value in terms.values())
    metrics = {f"loss/{k}": value for k, (_, value) in terms.items()} | {"loss/g_total": total}
    return total, (metrics, e_stats, fake)


def g_update(model: GeometryModel, state: GeometryState, batch: Batch, axis_name):
    """One joint update of G and E (Eq. 10); returns (state, metrics, x' before the update)."""
    objective = lambda p: generator_objective(model, state, p, batch, axis_name)
    params = {"g": state.g.params, "e": state.e.params}
    grads, (metrics, e_stats, fake) = jax.grad(objective, has_aux=True)(params)
    lr = model.hp.learning_rate
    state = state.replace(
        g=_update(model, state.g, grads["g"], lr, axis_name),
        e=_update(model, state.e, grads["e"], lr, axis_name),
        e_stats=e_stats,
    )
    return state, metrics, fake


def c_update(
    model: GeometryModel, state: GeometryState, batch: Batch, fakes, fake_labels, axis_name
) -> tuple[GeometryState, Metrics]:
    """One Adam update of C on Eq. 5: CE on the real faces (x, y) plus, when `fakes` [N, S, S,
    c] is not None, the smoothed CE (rho) on them against `fake_labels` [N] (constants: C's
    update never reaches G). Dropout keep-masks are keyed per sample."""
    x, y = batch["x"], batch["y"]
    b = x.shape[0]
    faces = x if fakes is None else jnp.concatenate([x, lax.stop_gradient(fakes)])
    keep = None
    if recognition.on_trunk(model.recognizer):  # R's dropout; block j serves copy j's faces.
        copies = faces.shape[0] // b
        masks = recognition.keep_masks(
            _key(state, DROPOUT_TAG), sample_indices(batch, axis_name), model.identity.width, copies
        )
        keep = masks.reshape(-1, masks.shape[-1])

    def objective(c_params):
        _, logits, stats = classify(model, state, c_params, faces, keep, True, axis_name)
        loss = shared_losses.classification_loss(logits[:b], y)
        metrics = {"acc/r_real": shared_losses.accuracy(logits[:b], y)}
        if fakes is not None:
            loss += losses.smoothed_cross_entropy(logits[b:], fake_labels, model.hp.smoothing)
            metrics["acc/r_synthetic"] = shared_losses.accuracy(logits[b:], fake_labels)
        return loss, (metrics | {"loss/r_cls": loss}, stats)

    grads, (metrics, stats) = jax.grad(objective, has_aux=True)(state.c.params)
    c = _update(model, state.c, grads, model.hp.recognizer_learning_rate, axis_name)
    return state.replace(c=c, c_stats=stats), metrics


def synthesis_update(model: GeometryModel, state: GeometryState, batch: Batch, axis_name):
    """Stage 1: D_att and D_i, then G and E, then (end to end) C on x and x'. BASELINE: C on x."""
    if not model.hp.variant.synthesis:
        return c_update(model, state, batch, None, None, axis_name)
    state, d_metrics = d_update(model, state, batch, axis_name)
    state, g_metrics, fake = g_update(model, state, batch, axis_name)
    metrics = d_metrics | g_metrics
    if model.hp.variant.end_to_end:
        state, c_metrics = c_update(model, state, batch, fake, batch["y_t"], axis_name)
        metrics |= c_metrics
    return state, metrics


def landmark_noise_amplitude(noise_px: float, image_size: int) -> float:
    """Table IX's noise, uniform in [-s, s] pixels at 224 px, as an amplitude in the [-1, 1]
    landmark units of faces of side `image_size`."""
    return 2.0 * noise_px * (image_size / PAPER_IMAGE_SIZE) / (image_size - 1)


def template_landmarks(model: GeometryModel, state: GeometryState, batch: Batch, axis_name):
    """Stage 2's target geometries: `synthetic_per_real` templates per real face drawn (per
    sample) from the bank, their landmarks moved by Table IX's noise
    (`geometry.landmark_noise`). Returns (landmarks [n B, 136], template indices [n B]),
    ordered copy-major."""
    n, bank = model.hp.synthetic_per_real, model.templates
    key = _key(state, TEMPLATE_TAG)
    amplitude = landmark_noise_amplitude(model.hp.landmark_noise, model.image_size)

    def draw(i):
        sample_key = jax.random.fold_in(key, i)
        noise_key = jax.random.fold_in(sample_key, NOISE_TAG)
        noise = jax.random.uniform(noise_key, (n, NUM_LANDMARK_COORDS), minval=-1.0)
        return jax.random.randint(sample_key, (n,), 0, len(bank)), amplitude * noise

    chosen, noise = jax.vmap(draw)(sample_indices(batch, axis_name))  # [B, n], [B, n, 136].
    chosen = chosen.T.reshape(-1)
    noise = jnp.swapaxes(noise, 0, 1).reshape(-1, NUM_LANDMARK_COORDS)
    return jnp.asarray(bank.landmark_array())[chosen] + noise, chosen


def template_renders(model: GeometryModel, state: GeometryState, batch: Batch, axis_name):
    """Stage 2's synthetic faces: each real face rendered with its `template_landmarks`, E at
    its running statistics. Returns (faces [n B, S, S, c] copy-major, template labels [n B])."""
    marks, chosen = template_landmarks(model, state, batch, axis_name)
    (code, _), _ = embed(model, state.e.params, state.e_stats, marks, train=False)
    x = jnp.tile(batch["x"], (model.hp.synthetic_per_real, 1, 1, 1))
    fakes, _ = render(model, state.g.params, x, code)
    return fakes, jnp.asarray(model.templates.labels, jnp.int32)[chosen]


def synthetic_update(model: GeometryModel, state: GeometryState, batch: Batch, axis_name):
    """Stage 2: C on the real faces and their template renders (real faces only without SynFI)."""
    if not model.hp.variant.synthetic:
        return c_update(model, state, batch, None, None, axis_name)
    fakes, labels = template_renders(model, state, batch, axis_name)
    return c_update(model, state, batch, fakes, labels, axis_name)


def train_step(
    model: GeometryModel,
    state: GeometryState,
    batch: Batch,
    axis_name: str | None = None,
    *,
    stage: int,
) -> tuple[GeometryState, Metrics]:
    """One iteration of stage `stage` (0: end to end, 1: C on real and template faces), the
    metrics averaged over devices, every stage's keys present (`stages.run_stage`)."""
    updates = (
        lambda st: synthesis_update(model, st, batch, axis_name),
        lambda st: synthetic_update(model, st, batch, axis_name),
    )
    state, metrics = stages.run_stage(updates, stage, state)
    return state.replace(step=state.step + 1), pmean(metrics, axis_name)


def stage_starts(model: GeometryModel) -> tuple[int]:
    """The synthetic stage starts after the end-to-end iterations."""
    return (model.hp.synthesis_steps,)
