"""LSSL's training iteration as a pure per-device function. Stage 1: `n_critic` D updates, then
one G update (A Sec. IV: 5 D updates per G update). Stage 2: one recognizer update on the real
faces and on G's renders of them with their target classes (the synthetic pool, model.py).
Each update works on this device's share of the batch.

Batch: x [B, S, S, c] in [-1, 1], s [B, S, S, c] the landmark heatmap of x (variants with a
side image), y and y_target [B] int32 (y_target != y), optional slot [B] int32. Every random
number is drawn per sample from its global position, and gradients and metrics are averaged
with lax.pmean over `axis_name`, so the result does not depend on the device count.
"""

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from fergan import losses as shared_losses
from fergan.methods.lssl import losses
from fergan.methods.lssl.model import LsslModel
from fergan.methods.lssl.parser import load_parser, parser_loss
from fergan.models import LightCNN29
from fergan.training import recognition, stages
from fergan.training.collectives import pmean, sample_indices
from fergan.training.optim import NetState, adam_step, init_net
from fergan.types import Batch, Metrics, PyTree


@flax.struct.dataclass
class LsslState:
    """G and D with their Adam states (None for BASELINE), the recognizer with its Adam state,
    the frozen parser's parameters (None without L_p) and LightCNN-29's (`identity`), the step
    and the base key (iteration t uses fold_in(rng, t))."""

    step: jax.Array
    rng: jax.Array
    g: NetState | None
    d: NetState | None
    r: NetState
    parser: PyTree
    identity: PyTree


def init_state(
    model: LsslModel,
    seed: int,
    identity_params: PyTree | None = None,
    parser_params: PyTree | None = None,
) -> LsslState:
    """Fresh G, D and recognizer from keys derived from `seed`. `identity_params`: the pretrained
    LightCNN-29 (None: drawn, untrained); `parser_params`: the parser's (None: read from
    `model.parser_weights`, or drawn when that is empty, as tests do)."""
    size, c, k = model.image_size, model.channels, model.num_classes
    x = jnp.zeros((1, size, size, c))
    s = x if model.hp.variant.side else None
    k_g, k_d, k_p, k_r, k_id, k_run = jax.random.split(jax.random.PRNGKey(seed), 6)
    net = lambda params: init_net(params, model.hp.b1, model.hp.b2)

    if identity_params is None:
        grey = jnp.zeros((1, size, size, 1))
        identity_params = model.identity.init(k_id, grey, method=LightCNN29.features)["params"]
    r = recognition.init_recognizer(model.recognizer, model.identity, identity_params, k_r, x)
    if model.parser is not None and parser_params is None:
        parser_params = (
            load_parser(model.parser_weights)[1]
            if model.parser_weights
            else model.parser.init(k_p, x)["params"]
        )
    gan = model.hp.variant.gan
    return LsslState(
        step=jnp.zeros((), jnp.int32),
        rng=k_run,
        g=net(model.generator.init(k_g, x, s, jnp.zeros((1, k)))["params"]) if gan else None,
        d=net(model.discriminator.init(k_d, x, s)["params"]) if gan else None,
        r=net(r),
        parser=parser_params if model.parser is not None else None,
        identity=identity_params,
    )


def penalty_points(key: jax.Array, indices: jax.Array, n_critic: int) -> jax.Array:
    """The WGAN-GP interpolation weights of every critic update, per sample: [n_critic, B] in
    [0, 1], sample i drawn from fold_in(key, index_i) (independent of the device split)."""
    draw = lambda index: jax.random.uniform(jax.random.fold_in(key, index), (n_critic,))
    return jax.vmap(draw)(indices).T


@dataclasses.dataclass(frozen=True)
class LsslContext:
    """What the D and G updates of one iteration share."""

    model: LsslModel
    batch: Batch
    code_target: jax.Array  # one-hot y_target [B, K].
    code_source: jax.Array  # one-hot y [B, K].
    t: jax.Array  # [n_critic, B].
    lr: jax.Array
    axis_name: str | None

    @property
    def side(self):
        return self.batch["s"] if self.model.hp.variant.side else None

    def update(self, net: NetState, grads) -> NetState:
        hp = self.model.hp
        return adam_step(net, pmean(grads, self.axis_name), self.lr, hp.b1, hp.b2)


def _context(model: LsslModel, state: LsslState, batch: Batch, axis_name) -> LsslContext:
    k = model.num_classes
    key = jax.random.fold_in(state.rng, state.step)
    return LsslContext(
        model=model,
        batch=batch,
        code_target=jax.nn.one_hot(batch["y_target"], k),
        code_source=jax.nn.one_hot(batch["y"], k),
        t=penalty_points(key, sample_indices(batch, axis_name), model.hp.n_critic),
        lr=model.hp.learning_rate_at(state.step),
        axis_name=axis_name,
    )


def discriminator_objective(ctx: LsslContext, d_params, fake, t) -> tuple[jax.Array, Metrics]:
    """L_D = -L_adv + lambda_cls L_cls_r (A Eq. 6), L_adv with its gradient penalty (A Eq. 1)."""
    model, hp = ctx.model, ctx.model.hp
    x, y, s = ctx.batch["x"], ctx.batch["y"], ctx.side
    x_fake, s_fake = fake
    apply = lambda im, side: model.discriminator.apply({"params": d_params}, im, side)
    adv_real, logits_real = apply(x, s)
    adv_fake, _ = apply(x_fake, s_fake)
    real_pair = x if s is None else jnp.concatenate([x, s], -1)
    fake_pair = x_fake if s is None else jnp.concatenate([x_fake, s_fake], -1)
    c = x.shape[-1]

    def critic(pair):
        side = None if s is None else pair[..., c:]
        return losses.patch_score(apply(pair[..., :c], side)[0])

    critic_term = shared_losses.critic_loss(
        losses.patch_score(adv_real), losses.patch_score(adv_fake)
    )
    gp = shared_losses.gradient_penalty(critic, real_pair, fake_pair, t)
    cls = losses.attribute_classification_loss(logits_real, y, hp.cls_loss)
    total = critic_term + hp.lambda_gp * gp + hp.lambda_cls * cls
    metrics = {"loss/d_adv": critic_term, "loss/gp": gp, "loss/d_cls": cls, "loss/d_total": total}
    return total, metrics | {"acc/d_real": shared_losses.accuracy(logits_real, y)}


def d_update(ctx: LsslContext, state: LsslState) -> tuple[LsslState, Metrics]:
    """`n_critic` D updates against the faces of the current G (constants here)."""
    model = ctx.model
    fake = model.generator.apply(
        {"params": state.g.params}, ctx.batch["x"], ctx.side, ctx.code_target
    )
    fake = lax.stop_gradient(fake)
    d, metrics = state.d, {}
    for t in ctx.t:  # Each critic update has its own interpolation points.
        grad_fn = jax.grad(lambda p, t=t: discriminator_objective(ctx, p, fake, t), has_aux=True)
        grads, metrics = grad_fn(d.params)
        d = ctx.update(d, grads)
    return state.replace(d=d), metrics


def generator_objective(ctx: LsslContext, state: LsslState, g_params) -> tuple[jax.Array, Metrics]:
    """L_G = L_adv + lambda_bi L_bi + lambda_cls L_cls_f + lambda_id L_id + lambda_p L_p
    (B Eq. 7; A Eq. 6 without L_p), with D and the parser as they are."""
    model, hp, v = ctx.model, ctx.model.hp, ctx.model.hp.variant
    x, s = ctx.batch["x"], ctx.side
    gen = lambda *a, **k: model.generator.apply({"params": g_params}, *a, **k)
    latent = gen(x, s, method=model.generator.encode)
    x_fake, s_fake = gen(latent, ctx.code_target, method=model.generator.decode)
    adv_fake, logits_fake = model.discriminator.apply({"params": state.d.params}, x_fake, s_fake)
    cls = losses.attribute_classification_loss(logits_fake, ctx.batch["y_target"], hp.cls_loss)
    terms = {
        "g_adv": (1.0, shared_losses.generator_adv_loss(losses.patch_score(adv_fake))),
        "g_cls": (hp.lambda_cls, cls),
    }
    id_code = ctx.code_target if hp.id_label == "target" else ctx.code_source
    x_same, _ = gen(latent, id_code, method=model.generator.decode)
    terms["id"] = (hp.lambda_id, losses.identity_loss(x, x_same))
    if v.bidirectional:
        latent_fake = gen(x_fake, s_fake, method=model.generator.encode)
        x_back, s_back = gen(latent_fake, ctx.code_source, method=model.generator.decode)
        bi = losses.bidirectional_loss(x, x_back, latent, latent_fake, s, s_back)
        terms["bi"] = (hp.lambda_bi, bi)
    if v.parsing:
        parse = lambda im: model.parser.apply({"params": state.parser}, im)
        terms["parsing"] = (hp.lambda_p, parser_loss(parse(x_fake), parse(x)))
    total = sum(w * value for w, value in terms.values())
    return total, {f"loss/{k}": value for k, (_, value) in terms.items()} | {"loss/g_total": total}


def g_update(ctx: LsslContext, state: LsslState) -> tuple[LsslState, Metrics]:
    """One G update on L_G; the parser's parameters are never differentiated."""
    grads, metrics = jax.grad(lambda p: generator_objective(ctx, state, p), has_aux=True)(
        state.g.params
    )
    return state.replace(g=ctx.update(state.g, grads)), metrics


def recognizer_update(
    model: LsslModel, state: LsslState, batch: Batch, axis_name
) -> tuple[LsslState, Metrics]:
    """One recognizer update on the real faces and, with a generator, on G(x, s, y_target) (the
    synthetic pool, G frozen): the mean softmax cross-entropy over both."""
    hp, v = model.hp, model.hp.variant
    faces, labels = [batch["x"]], [batch["y"]]
    if v.gan:
        code = jax.nn.one_hot(batch["y_target"], model.num_classes)
        side = batch["s"] if v.side else None
        fake, _ = model.generator.apply({"params": state.g.params}, batch["x"], side, code)
        faces.append(fake)
        labels.append(batch["y_target"])
    r, metrics = recognition.recognizer_update(
        model.recognizer,
        model.identity,
        state.identity,
        state.r,
        faces,
        labels,
        key=recognition.dropout_key(state.rng, state.step),
        indices=sample_indices(batch, axis_name),
        learning_rate=hp.recognizer_rate_at(state.step),
        betas=(hp.b1, hp.b2),
        axis_name=axis_name,
    )
    return state.replace(r=r), metrics | {"lr": hp.recognizer_rate_at(state.step)}


def gan_update(
    model: LsslModel, state: LsslState, batch: Batch, axis_name
) -> tuple[LsslState, Metrics]:
    """Stage 1: the D updates, then the G update."""
    ctx = _context(model, state, batch, axis_name)
    state, d_metrics = d_update(ctx, state)
    state, g_metrics = g_update(ctx, state)
    return state, d_metrics | g_metrics | {"lr": ctx.lr}


def train_step(
    model: LsslModel, state: LsslState, batch: Batch, axis_name: str | None = None, *, stage: int
) -> tuple[LsslState, Metrics]:
    """One iteration of stage `stage` (0: G and D, 1: the recognizer; `stage_starts`), the
    metrics averaged over devices. Both stages log the same keys, 0 where the other stage's, so
    a logging window across the boundary averages one structure."""
    stage1 = lambda st: gan_update(model, st, batch, axis_name)
    stage2 = lambda st: recognizer_update(model, st, batch, axis_name)
    updates = (stage1 if model.hp.variant.gan else None, stage2)
    state, metrics = stages.run_stage(updates, stage, state)
    return state.replace(step=state.step + 1), pmean(metrics, axis_name)


def stage_starts(model: LsslModel) -> tuple[int]:
    """The recognizer's stage starts after the GAN's iterations (none for BASELINE)."""
    return (model.hp.gan_steps,)
