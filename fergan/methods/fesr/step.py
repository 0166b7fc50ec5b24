"""FESR's training iteration (Algorithm 1) as a pure per-device function.

Order: Dz step, Dimg step, R step (stage 2), G step, each seeing the latest parameters. The
generator's forward pass (and the frozen LightCNN passes downstream of it) is computed once with
`jax.vjp`: the discriminator and R steps use its outputs as constants, and the G step pulls its
loss gradient back through the saved VJP, because G's parameters do not change before the G step.
R's own trunk (`recognizer.trunk` 'finetune') changes in the R step, so its passes are made in
R's and G's objectives instead (`StepContext.r_trunk_real`, `r_trunk_pf`).

Data parallelism: the body reduces gradients and metrics with `lax.pmean` over `axis_name` and
draws every random number per sample from the sample's global index, so the result does not
depend on how the global batch is split over devices.
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from fergan import losses
from fergan.methods.fesr.hparams import StepHParams
from fergan.methods.fesr.networks import Networks
from fergan.methods.fesr.state import (
    TrainState,
    r_head_params,
    r_trunk_params,
    recognizer_trunk,
)
from fergan.methods.fesr.variants import Variant
from fergan.models import LightCNN29, to_lightcnn_input
from fergan.models.recognizer import DROPOUT_RATE, RecognizerHead, rext_feature_dim
from fergan.training import cpu_workarounds
from fergan.training.collectives import pmean, sample_indices
from fergan.training.optim import NetState, adam_step
from fergan.types import Batch, Metrics, PyTree


def _draws(key: jax.Array, n: int, draw: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """n draws stacked on a new leading axis: the first from `key` itself, so that n = 1 is the
    single draw of `key`; the others from fold_in(key, i), i = 1 .. n-1."""
    keys = [key] + [jax.random.fold_in(key, i) for i in range(1, n)]
    return jnp.stack([draw(k) for k in keys])


def per_sample_noise(
    key: jax.Array,
    indices: jax.Array,
    latent_dim: int,
    num_classes: int,
    feature_dim: int,
    n_critic: int = 1,
    pf_per_sample: int = 1,
) -> dict[str, jax.Array]:
    """Every random draw of one iteration, per sample, keyed by the sample's global index.

    indices: [B]. Returns z [B, n] ~ U(-1, 1); v_target / v_rec [B, K] ~ U(0, 1) (Eq. 2); t
    [n_critic, B] ~ U(0, 1), the gradient-penalty points of each critic update; keep_real [B, F]
    dropout keep-mask of Rcls; v_pf [B * P, K] and keep_pf [B * P, F] for the P = `pf_per_sample`
    synthetic faces of each sample (sample-major).
    """

    def one(index):
        k = jax.random.split(jax.random.fold_in(key, index), 7)
        keep = 1.0 - DROPOUT_RATE
        mask = lambda kk: jax.random.bernoulli(kk, keep, (feature_dim,)).astype(jnp.float32)
        return {
            "z": jax.random.uniform(k[0], (latent_dim,), minval=-1.0, maxval=1.0),
            "v_target": jax.random.uniform(k[1], (num_classes,)),
            "v_rec": jax.random.uniform(k[2], (num_classes,)),
            "v_pf": _draws(k[3], pf_per_sample, lambda kk: jax.random.uniform(kk, (num_classes,))),
            "t": _draws(k[4], n_critic, lambda kk: jax.random.uniform(kk, ())),
            "keep_real": mask(k[5]),
            "keep_pf": _draws(k[6], pf_per_sample, mask),
        }

    noise = jax.vmap(one)(indices)
    noise["t"] = noise["t"].T
    for name in ("v_pf", "keep_pf"):
        noise[name] = noise[name].reshape(-1, noise[name].shape[-1])
    return noise


def pf_per_sample(variant: Variant, num_classes: int) -> int:
    """Synthetic faces x_pf per real sample: one from z, or FESR_Real's K renders of g(x)."""
    return num_classes if variant.synthetic_from_real else 1


def synthetic_labels(y: jax.Array, variant: Variant, num_classes: int) -> jax.Array:
    """Labels of x_pf [B * P]: the sample's own y [B], or for FESR_Real every class 0..K-1 for
    each sample in turn (Section IV-D: the input rendered with all expressions)."""
    if not variant.synthetic_from_real:
        return y
    return jnp.tile(jnp.arange(num_classes, dtype=y.dtype), y.shape[0])


def _branch(hp: StepHParams, pred: jax.Array, taken: Callable, fallback: Callable, *operands):
    """`taken(*operands)` if pred else `fallback(*operands)`, by `hp.gate_by_select` (both run,
    the faster form on CPU, `hparams.gate_by_select`); the fallbacks here are all cheap."""
    return cpu_workarounds.branch(hp.gate_by_select, pred, taken, fallback, *operands)


def _gated(
    hp: StepHParams, pred: jax.Array, update: Callable, net: NetState
) -> tuple[NetState, Metrics]:
    """`update(net) -> (net, metrics)` when pred, else (net, zeros): one compiled program for
    both stages."""

    def skip(n):
        shapes = jax.eval_shape(update, n)[1]
        return n, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    return _branch(hp, pred, update, skip, net)


def _synthesize(
    nets: Networks, hp: StepHParams, g_params, identity, batch: Batch, noise, needs_pf: jax.Array
) -> dict[str, jax.Array]:
    """G's outputs for one iteration and the frozen-LightCNN features computed from them.

    g = Genc(x) [B, n]; x_hat = Gdec([g, u(y')]) (Eq. 3); x_rec = Gdec([g, u(y)]) (Eq. 11) and
    F_id(x_rec) when a content loss needs them; x_pair_hat / x_neutral_hat = Gdec([g, u(y')]) at
    intensity 1 / 0 for the paired losses; x_pf = Gdec([z, u(y)]) (Eq. 13) [B, ...], or for
    FESR_Real Gdec([g, u(k)]) for every class k [B * K, ...], and (frozen R trunk) its trunk
    output `trunk_pf`, computed only when `needs_pf` (stage 2) so stage 1 does not pay for them.
    A fine-tuned trunk changes in R's update, so its pass on x_pf is made downstream instead.
    """
    v = hp.variant
    gen = nets.generator
    x, y = batch["x"], batch["y"]
    g = gen.apply({"params": g_params}, x, method=gen.encode)
    codes = {"x_hat": losses.expression_code(batch["y_target"], noise["v_target"])}
    if v.use_rec or v.use_id:
        codes["x_rec"] = losses.expression_code(y, noise["v_rec"])
    # Paired synthesis (configs/default.py): y' at intensity 1 and 0, in u's inference form.
    paired = {"x_pair_hat": (hp.lambda_pair, 1.0), "x_neutral_hat": (hp.lambda_neutral, 0.0)}
    for name, (weight, intensity) in paired.items():
        if weight > 0:
            a = jnp.full(y.shape, intensity)
            codes[name] = losses.inference_code(
                batch["y_target"], a, nets.num_classes, nets.inference_off_value
            )
    # One decoder call for every render of g(x): instance norm is per sample, so batching is
    # exact.
    rendered = gen.apply(
        {"params": g_params},
        jnp.concatenate([g] * len(codes)),
        jnp.concatenate(list(codes.values())),
        method=gen.decode,
    )
    out = {"g": g} | dict(zip(codes, jnp.split(rendered, len(codes)), strict=True))
    if v.use_id:
        out["fid_rec"] = nets.identity.apply(
            {"params": identity},
            to_lightcnn_input(out["x_rec"]),
            method=LightCNN29.identity_feature,
        )

    if v.use_synthetic:
        # FESR_Real renders g(x) of the sample itself with every expression; the others use z.
        k = nets.num_classes
        source = jnp.repeat(g, k, axis=0) if v.synthetic_from_real else noise["z"]
        y_pf = synthetic_labels(y, v, k)
        u_pf = losses.expression_code(
            y_pf, losses.raise_intensity(y_pf, noise["v_pf"], hp.synthetic_min_intensity)
        )

        def make_pf(src):
            x_pf = gen.apply({"params": g_params}, src, u_pf, method=gen.decode)
            if nets.finetune_trunk:
                return {"x_pf": x_pf}
            return {"x_pf": x_pf, "trunk_pf": recognizer_trunk(nets, identity, x_pf)}

        def no_pf(src):
            shapes = jax.eval_shape(make_pf, src)
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        out |= _branch(hp, needs_pf, make_pf, no_pf, source)
    return out


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What the four updates of one iteration share (built once per iteration, inside the trace).

    `outputs` are G's outputs with `g_vjp` their pullback to G's parameters; `fixed` the same
    outputs as constants for the discriminator and R updates.
    """

    nets: Networks
    hp: StepHParams
    batch: Batch
    noise: dict[str, jax.Array]
    y_pf: jax.Array  # Labels of x_pf, [B * P] (see `synthetic_labels`).
    axis_name: str | None
    identity: PyTree  # The frozen LightCNN-29 parameters.
    stage2: jax.Array  # bool scalar: t >= P_pre.
    gan_active: jax.Array  # bool scalar: FESGAN is trained this iteration.
    lr: jax.Array
    trunk_x: jax.Array  # Frozen LightCNN conv1..pool3 of x, [B, S/8, S/8, C].
    trunk_pr: jax.Array | None  # ... of x_pr; None when R fine-tunes its own trunk.
    fid_x: jax.Array  # F_id(x), [B, D].
    outputs: dict[str, jax.Array] | None
    fixed: dict[str, jax.Array] | None
    g_vjp: Callable | None

    def adam_update(self, net: NetState, grads) -> NetState:
        """Average gradients over devices, then one Adam step at this iteration's rate."""
        return adam_step(net, pmean(grads, self.axis_name), self.lr, self.hp.b1, self.hp.b2)

    def r_trunk_real(self, r_params) -> tuple[jax.Array, jax.Array]:
        """R's trunk outputs on x and x_pr, [B, S/8, S/8, C] each. A frozen trunk does not
        depend on R, so `prepare`'s passes serve; a fine-tuned one runs here, one pass over both,
        differentiable in `r_params`."""
        if not self.nets.finetune_trunk:
            return self.trunk_x, self.trunk_pr
        trunk = r_trunk_params(self.nets, r_params, self.identity)
        both = jnp.concatenate([self.batch["x"], self.batch["x_pr"]])
        return tuple(jnp.split(recognizer_trunk(self.nets, trunk, both), 2))

    def r_trunk_pf(self, r_params, outputs: dict[str, jax.Array]) -> jax.Array:
        """R's trunk output on x_pf of G's `outputs`, [B * P, S/8, S/8, C]: `_synthesize`'s
        frozen pass, or R's own trunk on x_pf (differentiable in `r_params` and in x_pf)."""
        if not self.nets.finetune_trunk:
            return outputs["trunk_pf"]
        trunk = r_trunk_params(self.nets, r_params, self.identity)
        return recognizer_trunk(self.nets, trunk, outputs["x_pf"])


def prepare(
    nets: Networks, hp: StepHParams, state: TrainState, batch: Batch, axis_name: str | None = None
) -> StepContext:
    """Draw the iteration's noise and run the forward passes every update shares."""
    v = hp.variant
    x = batch["x"]
    indices = sample_indices(batch, axis_name)
    key = jax.random.fold_in(state.rng, state.step)
    noise = per_sample_noise(
        key,
        indices,
        nets.latent_dim,
        nets.num_classes,
        rext_feature_dim(nets.recognizer.width),
        n_critic=hp.n_critic,
        pf_per_sample=pf_per_sample(v, nets.num_classes),
    )
    stage2 = state.step >= hp.pre_steps
    # The frozen identity network on real images: one pass gives R's trunk input and F_id(x).
    trunk_x, fid_x = nets.identity.apply(
        {"params": state.identity}, to_lightcnn_input(x), method=LightCNN29.features
    )
    trunk_pr = None
    if not nets.finetune_trunk:
        trunk_pr = recognizer_trunk(nets, state.identity, batch["x_pr"])
    outputs = fixed = g_vjp = None
    if v.use_gan:
        outputs, g_vjp = jax.vjp(
            lambda p: _synthesize(nets, hp, p, state.identity, batch, noise, stage2), state.g.params
        )
        fixed = lax.stop_gradient(outputs)
    return StepContext(
        nets=nets,
        hp=hp,
        batch=batch,
        noise=noise,
        y_pf=synthetic_labels(batch["y"], v, nets.num_classes),
        axis_name=axis_name,
        identity=state.identity,
        stage2=stage2,
        # FESR_SL freezes FESGAN in stage 2; the joint variants keep training it.
        gan_active=jnp.logical_and(v.use_gan, jnp.logical_or(jnp.logical_not(stage2), v.joint)),
        lr=hp.learning_rate_at(state.step),
        trunk_x=trunk_x,
        trunk_pr=trunk_pr,
        fid_x=fid_x,
        outputs=outputs,
        fixed=fixed,
        g_vjp=g_vjp,
    )


def dz_step(ctx: StepContext, state: TrainState) -> tuple[TrainState, Metrics]:
    """1. Dz update on L^z_adv,d (Eq. 24) with g(x) fixed."""
    if not (ctx.hp.variant.use_gan and ctx.hp.variant.use_dz):
        return state, {}

    def update(net):
        def loss_fn(params):
            logit_prior = ctx.nets.dz.apply({"params": params}, ctx.noise["z"])
            logit_enc = ctx.nets.dz.apply({"params": params}, ctx.fixed["g"])
            return losses.latent_discriminator_loss(logit_prior, logit_enc)

        loss, grads = jax.value_and_grad(loss_fn)(net.params)
        return ctx.adam_update(net, grads), {"loss/dz": loss}

    dz, metrics = _gated(ctx.hp, ctx.gan_active, update, state.dz)
    return state.replace(dz=dz), metrics


def dimg_step(ctx: StepContext, state: TrainState) -> tuple[TrainState, Metrics]:
    """2. Dimg update on L_Dimg = l5 L^img_adv,d + L^r_cls,D (Eq. 23), `n_critic` times."""
    v, hp, nets = ctx.hp.variant, ctx.hp, ctx.nets
    if not (v.use_gan and v.use_dimg):
        return state, {}
    x, y, x_hat = ctx.batch["x"], ctx.batch["y"], ctx.fixed["x_hat"]

    def loss_fn(params, t):
        critic = lambda im: nets.dimg.apply({"params": params}, im)[0]
        adv_real, logits_real = nets.dimg.apply({"params": params}, x)
        gp = losses.gradient_penalty(critic, x, x_hat, t)
        adv = losses.critic_loss(adv_real, critic(x_hat))
        total = hp.lambda_adv_d * (adv + hp.lambda_gp * gp)
        metrics = {"loss/dimg_adv": adv, "loss/gp": gp}
        if v.use_dimg_cls:
            cls = losses.classification_loss(logits_real, y)
            total = total + cls
            metrics |= {"loss/dimg_cls": cls, "acc/dimg_real": losses.accuracy(logits_real, y)}
        return total, metrics | {"loss/dimg_total": total}

    def update(net):
        metrics = {}
        for t in ctx.noise["t"]:  # Each critic update has its own interpolation points.
            (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(net.params, t)
            net = ctx.adam_update(net, grads)
        return net, metrics

    dimg, metrics = _gated(hp, ctx.gan_active, update, state.dimg)
    return state.replace(dimg=dimg), metrics


def recognizer_objective(ctx: StepContext, params) -> tuple[jax.Array, Metrics]:
    """L_R = l6 L_intra + L_cls,R (Eq. 26) of R's parameters, with x_pf a constant."""
    v, hp, nets = ctx.hp.variant, ctx.hp, ctx.nets
    y, noise = ctx.batch["y"], ctx.noise
    head_params = r_head_params(nets, params)
    head = lambda *a, **k: nets.recognizer.apply({"params": head_params}, *a, **k)
    parts = list(ctx.r_trunk_real(params))
    if v.use_synthetic:
        parts.append(ctx.r_trunk_pf(params, ctx.fixed))
    # One Rext pass over real, partner and synthetic inputs (FESR_Real: K synthetic each).
    b = parts[0].shape[0]
    feats = jnp.split(head(jnp.concatenate(parts), method=RecognizerHead.extract), [b, 2 * b])
    logits_x = head(feats[0], noise["keep_real"], method=RecognizerHead.classify)
    cls = losses.classification_loss(logits_x, y)
    metrics = {"acc/r_real": losses.accuracy(logits_x, y)}
    f_pf = None
    if v.use_synthetic:
        f_pf = feats[2]
        logits_pf = head(f_pf, noise["keep_pf"], method=RecognizerHead.classify)
        cls = cls + losses.classification_loss(logits_pf, ctx.y_pf)
        metrics["acc/r_synthetic"] = losses.accuracy(logits_pf, ctx.y_pf)
    total = cls
    if v.use_intra:
        terms = losses.intra_class_terms(feats[0], feats[1], f_pf, rdbp=v.rdbp)
        intra = sum(terms.values())
        total = total + hp.lambda_intra * intra
        metrics |= {"loss/intra": intra} | {f"loss/intra_{k}": d for k, d in terms.items()}
    return total, metrics | {"loss/r_cls": cls, "loss/r_total": total}


def r_step(ctx: StepContext, state: TrainState) -> tuple[TrainState, Metrics]:
    """3. R update on L_R (Eq. 26), stage 2 only."""

    def update(net):
        (_, metrics), grads = jax.value_and_grad(
            functools.partial(recognizer_objective, ctx), has_aux=True
        )(net.params)
        return ctx.adam_update(net, grads), metrics

    r, metrics = _gated(ctx.hp, ctx.stage2, update, state.r)
    return state.replace(r=r), metrics


def generator_objective(
    ctx: StepContext, state: TrainState, outputs: dict[str, jax.Array]
) -> tuple[jax.Array, Metrics]:
    """L_G (Eq. 22; Eq. 25 in stage 2) of G's outputs, with the current Dimg, Dz and R."""
    v, hp, nets = ctx.hp.variant, ctx.hp, ctx.nets
    x, y_target = ctx.batch["x"], ctx.batch["y_target"]
    terms = {}
    if v.use_dimg:
        adv_fake, logits_fake = nets.dimg.apply({"params": state.dimg.params}, outputs["x_hat"])
        terms["g_adv"] = (1.0, losses.generator_adv_loss(adv_fake))
        if v.use_dimg_cls:
            terms["g_cls_d"] = (hp.lambda_cls, losses.classification_loss(logits_fake, y_target))
    if v.use_dz:
        logit = nets.dz.apply({"params": state.dz.params}, outputs["g"])
        terms["g_z"] = (hp.lambda_z, losses.latent_generator_loss(logit))
    if v.use_rec:
        terms["rec"] = (hp.lambda_rec, losses.reconstruction_loss(x, outputs["x_rec"]))
    if v.use_id:
        terms["id"] = (hp.lambda_id, losses.identity_loss(ctx.fid_x, outputs["fid_rec"]))
    batch = ctx.batch
    if hp.lambda_pair > 0:
        pair = losses.paired_loss(batch["x_pair"], outputs["x_pair_hat"], batch["pair_valid"])
        terms["pair"] = (hp.lambda_pair, pair)
    if hp.lambda_neutral > 0:
        neutral = losses.paired_loss(
            batch["x_own_neutral"], outputs["x_neutral_hat"], batch["own_neutral_valid"]
        )
        terms["pair_neutral"] = (hp.lambda_neutral, neutral)
    if v.use_synthetic and v.joint:

        def r_loss_on_pf():
            logits = nets.recognizer.apply(
                {"params": r_head_params(nets, state.r.params)},
                ctx.r_trunk_pf(state.r.params, outputs),
                ctx.noise["keep_pf"],
            )[1]
            return losses.classification_loss(logits, ctx.y_pf)

        loss = _branch(hp, ctx.stage2, r_loss_on_pf, lambda: jnp.zeros(()))
        terms["g_cls_r"] = (hp.lambda_cls, loss)
    total = sum(w * t for w, t in terms.values())
    return total, {f"loss/{k}": t for k, (_, t) in terms.items()} | {"loss/g_total": total}


def generator_gradients(ctx: StepContext, state: TrainState) -> tuple[PyTree, Metrics]:
    """d L_G / d G's parameters (this device's share), pulled back through the saved VJP."""
    cotangent, metrics = jax.grad(lambda out: generator_objective(ctx, state, out), has_aux=True)(
        ctx.outputs
    )
    (grads,) = ctx.g_vjp(cotangent)
    return grads, metrics


def g_step(ctx: StepContext, state: TrainState) -> tuple[TrainState, Metrics]:
    """4. G (Genc + Gdec) update on L_G with the Dimg, Dz and R of this iteration."""
    if not ctx.hp.variant.use_gan:
        return state, {}

    def update(net):
        grads, metrics = generator_gradients(ctx, state)
        return ctx.adam_update(net, grads), metrics

    g, metrics = _gated(ctx.hp, ctx.gan_active, update, state.g)
    return state.replace(g=g), metrics


# Algorithm 1's order: each update sees the parameters the previous ones produced.
UPDATES = (dz_step, dimg_step, r_step, g_step)


def train_step(
    nets: Networks, hp: StepHParams, state: TrainState, batch: Batch, axis_name: str | None = None
) -> tuple[TrainState, Metrics]:
    """Algorithm 1, one iteration, on this device's share of the batch.

    batch: x, x_pr [B, S, S, c] in [-1, 1]; y, y_target [B] int32; optional slot [B] int32 (the
    sample's position in the global batch, keying its noise); with the paired losses x_pair /
    x_own_neutral [B, S, S, c] and pair_valid / own_neutral_valid [B]. Returns the new state and
    a dict of scalar metrics averaged over devices (every loss term, GP, accuracies, learning rate).
    """
    ctx = prepare(nets, hp, state, batch, axis_name)
    metrics: Metrics = {"lr": ctx.lr, "stage": 1.0 + ctx.stage2.astype(jnp.float32)}
    for update in UPDATES:
        state, m = update(ctx, state)
        metrics |= m
    return state.replace(step=state.step + 1), pmean(metrics, axis_name)
