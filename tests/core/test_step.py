"""The training iteration: which update touches what, stages, variants, determinism, learning."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fergan import losses
from fergan.methods.fesr import step as step_lib
from fergan.methods.fesr.hparams import make_hparams
from fergan.methods.fesr.networks import build_networks
from fergan.methods.fesr.state import init_state
from fergan.methods.fesr.variants import VARIANTS, Variant
from fergan.training import cpu_workarounds
from fergan.training.parallel import select_devices
from tests.core.helpers import parallel_runner, random_batch, setup, tiny_config


def tree_equal(a, b):
    return all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 4))
def run_updates(nets, hp, state, batch, updates):
    ctx = step_lib.prepare(nets, hp, state, batch)
    for update in updates:
        state, _ = update(ctx, state)
    return state


# Batch 4 and 1 step per epoch (stage 2 from step 1), as in test_every_variant_runs_both_stages:
# a full iteration of a variant (select or cond gating) is one program here, compiled once.
SHARED = {"batch_size": 4}
SHARED_STEPS_PER_EPOCH = 1


@pytest.fixture(scope="module")
def joint():
    config = tiny_config(**SHARED)
    nets, hp, state = setup(config, steps_per_epoch=SHARED_STEPS_PER_EPOCH)
    return config, nets, hp, state, random_batch(config)


def at_step(state, t):
    return state.replace(step=jax.numpy.asarray(t, jax.numpy.int32))


def test_g_step_updates_only_g(joint):
    _, nets, hp, state, batch = joint
    s2 = at_step(state, hp.pre_steps)
    new = run_updates(nets, hp, s2, batch, (step_lib.g_step,))
    assert not tree_equal(new.g.params, s2.g.params)
    for name in ("dimg", "dz", "r"):
        assert tree_equal(getattr(new, name), getattr(s2, name)), name
    assert tree_equal(new.identity, s2.identity)


def test_r_step_updates_only_r(joint):
    _, nets, hp, state, batch = joint
    s2 = at_step(state, hp.pre_steps)
    new = run_updates(nets, hp, s2, batch, (step_lib.r_step,))
    assert not tree_equal(new.r.params, s2.r.params)
    for name in ("g", "dimg", "dz"):
        assert tree_equal(getattr(new, name), getattr(s2, name)), name


@pytest.mark.parametrize("gate_by_select", [False, True])
def test_stage_one_leaves_r_untouched_and_identity_is_frozen(joint, gate_by_select):
    _, nets, hp, state, batch = joint
    hp = dataclasses.replace(hp, gate_by_select=gate_by_select)
    assert hp.pre_steps > 0
    step = jax.jit(functools.partial(step_lib.train_step, nets, hp))
    s1, metrics = step(state, batch)
    assert tree_equal(s1.r, state.r)
    assert float(metrics["stage"]) == 1.0 and float(metrics["loss/r_total"]) == 0.0
    for name in ("g", "dimg", "dz"):
        assert not tree_equal(getattr(s1, name).params, getattr(state, name).params), name
    s2, metrics = step(at_step(s1, hp.pre_steps), batch)
    assert float(metrics["stage"]) == 2.0 and float(metrics["loss/r_total"]) > 0.0
    assert not tree_equal(s2.r.params, s1.r.params)
    assert tree_equal(s2.identity, state.identity)


def test_identity_loss_sends_gradient_into_the_generator(joint):
    config, nets, _, state, batch = joint
    # Only L_id in G's objective: no Dimg, Dz, L_rec or synthetic branch.
    hp = make_hparams(config, 2)
    only_id = Variant(use_dimg=False, use_dz=False, use_rec=False, use_synthetic=False)
    hp = hp.__class__(**{**hp.__dict__, "variant": only_id})

    @jax.jit
    def grads(state, batch):
        ctx = step_lib.prepare(nets, hp, state, batch)
        return step_lib.generator_gradients(ctx, state)

    g, metrics = grads(state, batch)
    assert set(metrics) == {"loss/id", "loss/g_total"} and float(metrics["loss/id"]) > 0
    for part in ("enc", "dec"):
        norm = np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(g[part])))
        assert norm > 0, part


@pytest.mark.parametrize("gate_by_select", [False, True])
def test_sl_freezes_fesgan_in_stage_two(gate_by_select):
    config = tiny_config("FESR_SL", **SHARED)
    nets, hp, state = setup(config, steps_per_epoch=SHARED_STEPS_PER_EPOCH)
    hp = dataclasses.replace(hp, gate_by_select=gate_by_select)
    s2 = at_step(state, hp.pre_steps)
    new, _ = jax.jit(functools.partial(step_lib.train_step, nets, hp))(s2, random_batch(config))
    for name in ("g", "dimg", "dz"):
        assert tree_equal(getattr(new, name), getattr(s2, name)), name
    assert not tree_equal(new.r.params, s2.r.params)


def test_baseline_trains_only_r():
    config = tiny_config("BASELINE", **SHARED)
    nets, hp, state = setup(config, steps_per_epoch=SHARED_STEPS_PER_EPOCH)
    assert hp.pre_steps == 0
    new, metrics = jax.jit(functools.partial(step_lib.train_step, nets, hp))(
        state, random_batch(config)
    )
    for name in ("g", "dimg", "dz"):
        assert tree_equal(getattr(new, name), getattr(state, name)), name
    assert not tree_equal(new.r.params, state.r.params)
    assert "loss/intra" not in metrics and "acc/r_synthetic" not in metrics


# Variants with identical switches (FG and FESR_JL) compile the same program: test one of them.
DISTINCT_VARIANTS = sorted({v: name for name, v in sorted(VARIANTS.items(), reverse=True)}.values())


@pytest.mark.parametrize("variant", DISTINCT_VARIANTS)
def test_every_variant_runs_both_stages(variant):
    config = tiny_config(variant, **SHARED)
    nets, hp, state = setup(config, steps_per_epoch=SHARED_STEPS_PER_EPOCH)
    step = jax.jit(functools.partial(step_lib.train_step, nets, hp))
    batch = random_batch(config)
    for _ in range(2):
        state, metrics = step(state, batch)
        assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    v = VARIANTS[variant]
    assert ("loss/intra" in metrics) == v.use_intra
    assert ("acc/r_synthetic" in metrics) == v.use_synthetic
    assert ("loss/g_cls_r" in metrics) == (v.use_synthetic and v.joint)


def test_one_stage_trains_r_and_g_together_from_the_first_step():
    config = tiny_config("FESR_OneSt", batch_size=4)
    nets, hp, state = setup(config, steps_per_epoch=1)
    assert hp.pre_steps == 0 and int(state.step) == 0
    new, metrics = jax.jit(functools.partial(step_lib.train_step, nets, hp))(
        state, random_batch(config)
    )
    assert float(metrics["stage"]) == 2.0 and float(metrics["loss/g_cls_r"]) > 0.0
    for name in ("g", "dimg", "dz", "r"):
        assert not tree_equal(getattr(new, name).params, getattr(state, name).params), name


@pytest.mark.parametrize("variant, reaches_real", [("FESR_JL", False), ("FESR_JL-RDBP", True)])
def test_rdbp_decides_whether_the_synthetic_distance_reaches_the_real_feature(
    variant, reaches_real
):
    config = tiny_config(variant)
    nets, hp, state = setup(config)
    s2 = at_step(state, hp.pre_steps)

    @jax.jit
    def grads_on_real_input(state, batch):
        # d L_intra-term / d (R's real input): the real-feature path of Rext(x).
        ctx = step_lib.prepare(nets, hp, state, batch)

        def term(trunk_x, name):
            ctx_x = dataclasses.replace(ctx, trunk_x=trunk_x)
            return step_lib.recognizer_objective(ctx_x, state.r.params)[1][name]

        return {
            name: jax.grad(term)(ctx.trunk_x, f"loss/intra_{name}")
            for name in ("real", "synthetic")
        }

    grads = grads_on_real_input(s2, random_batch(config))
    assert np.any(grads["real"] != 0)  # The real/real distance always trains Rext(x).
    if reaches_real:
        assert np.any(grads["synthetic"] != 0)
    else:  # RDBP (Eq. 18): Rext(x) is a fixed target of the real/synthetic distance.
        assert np.all(grads["synthetic"] == 0)


def test_fesr_real_renders_each_sample_itself_with_every_expression():
    config = tiny_config("FESR_Real")
    nets, hp, state = setup(config)
    s2 = at_step(state, hp.pre_steps)
    batch = random_batch(config)
    k, b = nets.num_classes, config.train.batch_size

    @jax.jit
    def synthetic(state, batch):
        ctx = step_lib.prepare(nets, hp, state, batch)
        return ctx.fixed["x_pf"], ctx.y_pf, ctx.noise["v_pf"]

    x_pf, y_pf, v_pf = synthetic(s2, batch)
    assert x_pf.shape == (b * k, *batch["x"].shape[1:])
    np.testing.assert_array_equal(y_pf, np.tile(np.arange(k), b))
    gen, params = nets.generator, {"params": s2.g.params}
    for i in (0, b - 1):  # G(x_i, u(c)) for the sample's own x_i, one sample at a time.
        code = gen.apply(params, batch["x"][i : i + 1], method=gen.encode)
        rows = slice(i * k, (i + 1) * k)
        u = losses.expression_code(jnp.arange(k), v_pf[rows])
        expected = gen.apply(params, jnp.repeat(code, k, axis=0), u, method=gen.decode)
        np.testing.assert_allclose(x_pf[rows], expected, atol=2e-5)


def test_synthetic_min_intensity_raises_only_the_own_class_of_x_pf():
    config = tiny_config()
    config.recognizer.synthetic_min_intensity = 0.7
    nets, hp, state = setup(config)
    s2 = at_step(state, hp.pre_steps)
    batch = random_batch(config)

    @jax.jit
    def synthetic(state, batch):
        ctx = step_lib.prepare(nets, hp, state, batch)
        return ctx.fixed["x_pf"], ctx.noise["z"], ctx.noise["v_pf"]

    x_pf, z, v_pf = synthetic(s2, batch)
    gen, params = nets.generator, {"params": s2.g.params}
    y = jnp.asarray(batch["y"])
    render = lambda v: gen.apply(params, z, losses.expression_code(y, v), method=gen.decode)
    own = jax.nn.one_hot(y, nets.num_classes)
    np.testing.assert_allclose(x_pf, render(v_pf + own * 0.7 * (1.0 - v_pf)), atol=2e-5)
    assert float(jnp.abs(x_pf - render(v_pf)).max()) > 1e-3  # Not the paper's U(0, 1) draw.
    config.recognizer.synthetic_min_intensity = 1.0
    with pytest.raises(ValueError, match=r"recognizer.synthetic_min_intensity=1.0 must be in"):
        make_hparams(config, 1)


@pytest.mark.parametrize("variant", ["FESR_JL", "FESR_SL"])
def test_cond_and_select_gating_agree_across_the_stage_switch(variant):
    config = tiny_config(variant, **SHARED)
    nets, hp, state = setup(config, steps_per_epoch=SHARED_STEPS_PER_EPOCH)  # Stage 2 from step 1.
    batch = random_batch(config)
    finals = []
    for select in (False, True):
        step = jax.jit(
            functools.partial(
                step_lib.train_step, nets, dataclasses.replace(hp, gate_by_select=select)
            )
        )
        s = state
        for _ in range(3):
            s, metrics = step(s, batch)
        finals.append((s, metrics))
    assert float(finals[0][1]["stage"]) == 2.0
    # Different fusion of the same arithmetic: float rounding only, which Adam can amplify a little.
    assert_trees_close(finals[0], finals[1], rtol=1e-3, atol=1e-5)


def test_gating_resolves_by_platform_and_rejects_unknown_values():
    resolve = cpu_workarounds.gate_by_select
    assert resolve("auto", "cpu") and not resolve("auto", "gpu")
    assert resolve("select", "tpu") and not resolve("cond", "cpu")
    with pytest.raises(ValueError, match=r"train\.gating='when'"):
        resolve("when", "cpu")


@pytest.mark.parametrize("pre_epochs, max_epochs, decay_fraction", [(1, 4, 0.5), (3, 10, 0.9)])
def test_baseline_r_rates_equal_the_stage_two_r_rates(pre_epochs, max_epochs, decay_fraction):
    rates = {}
    for variant in ("BASELINE", "FESR_JL"):
        config = tiny_config(variant, pre_epochs=pre_epochs, max_epochs=max_epochs)
        config.optim.decay_fraction = decay_fraction
        hp = make_hparams(config, steps_per_epoch=3)
        # R is updated at every step of BASELINE and at steps P_pre .. P_max - 1 of FESR_JL.
        r_steps = np.arange(hp.pre_steps, hp.total_steps, dtype=np.int32)
        rates[variant] = [float(hp.learning_rate_at(jnp.asarray(t))) for t in r_steps]
    assert len(rates["BASELINE"]) == 3 * (max_epochs - pre_epochs)
    assert rates["BASELINE"] == rates["FESR_JL"]
    assert 0 < rates["FESR_JL"][-1] < rates["FESR_JL"][0]  # The decay falls in stage 2.


def run_parallel(config, mode, num_devices, steps=3):
    nets = build_networks(config.model)
    hp = make_hparams(config, steps_per_epoch=1)
    runner = parallel_runner(nets, hp, select_devices(num_devices, config.train.batch_size), mode)
    state = runner.place_state(init_state(nets, config.seed, hp.b1, hp.b2))
    for i in range(steps):
        state, metrics = runner(state, runner.place_batch(random_batch(config, seed=i)))
    return runner.host_state(state), jax.device_get(metrics)


@pytest.fixture(scope="module")
def shard_map_4():
    return run_parallel(tiny_config(batch_size=8), "shard_map", 4)


def assert_trees_close(a, b, rtol, atol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_pmap_and_shard_map_agree(shard_map_4):
    assert len(jax.devices()) == 4
    pmapped = run_parallel(tiny_config(batch_size=8), "pmap", 4)
    assert_trees_close(pmapped[0], shard_map_4[0], rtol=1e-5, atol=1e-6)
    assert_trees_close(pmapped[1], shard_map_4[1], rtol=1e-5, atol=1e-6)


def test_one_and_four_devices_agree(shard_map_4):
    # Per-sample noise is keyed by global sample index, so only the order of the floating-point
    # reductions differs between 1 and 4 devices.
    single = run_parallel(tiny_config(batch_size=8), "shard_map", 1)
    assert int(single[0].step) == 3
    assert_trees_close(single[0], shard_map_4[0], rtol=1e-3, atol=1e-5)


def test_two_critic_updates_agree_on_one_and_four_devices(shard_map_4):
    config = tiny_config(batch_size=8)
    config.train.n_critic = 2
    four = run_parallel(config, "shard_map", 4)
    single = run_parallel(config, "shard_map", 1)
    assert_trees_close(single[0], four[0], rtol=1e-3, atol=1e-5)
    # The second critic update really ran.
    assert not tree_equal(four[0].dimg.params, shard_map_4[0].dimg.params)


def test_fesr_real_agrees_on_one_and_four_devices():
    config = tiny_config("FESR_Real", batch_size=8)
    four = run_parallel(config, "shard_map", 4)
    single = run_parallel(config, "shard_map", 1)
    assert "loss/intra" not in four[1] and "acc/r_synthetic" in four[1]
    # FESR_Real's G gradient is sensitive to rounding (scaling G's initial parameters by
    # 1 + 1e-7 moves its Adam moments by about 1% in three steps on one device), so each leaf is
    # compared by its norm; a device-dependent x_pf changes R's and G's moments entirely.
    for a, b in zip(jax.tree.leaves(single[0]), jax.tree.leaves(four[0]), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert np.linalg.norm(a - b) <= 2e-2 * np.linalg.norm(b) + 1e-6


def test_same_seed_is_bit_identical_and_other_seed_differs(shard_map_4):
    again = run_parallel(tiny_config(batch_size=8), "shard_map", 4)
    assert tree_equal(again[0], shard_map_4[0])
    other = run_parallel(tiny_config(batch_size=8, seed=1), "shard_map", 4)
    assert not tree_equal(other[0].g.params, shard_map_4[0].g.params)
    assert not tree_equal(other[0].r.params, shard_map_4[0].r.params)


def smooth_images(rng, n, size):
    """Blocky images (4x4 random levels upsampled): learnable through the 64-d bottleneck."""
    low = rng.uniform(-1, 1, (n, 4, 4, 1))
    return np.kron(low, np.ones((1, size // 4, size // 4, 1))).astype(np.float32)


def test_overfits_a_fixed_batch():
    config = tiny_config(batch_size=8, pre_epochs=100, max_epochs=250)
    config.model.width = 0.25
    config.optim.learning_rate = 1e-3  # A few hundred steps instead of thousands.
    nets, hp, state = setup(config, steps_per_epoch=1)
    step = jax.jit(functools.partial(step_lib.train_step, nets, hp), donate_argnums=0)
    rng = np.random.default_rng(0)
    batch = random_batch(config) | {
        "x": smooth_images(rng, 8, 32),
        "x_pr": smooth_images(rng, 8, 32),
    }
    history = []
    for _ in range(hp.total_steps):
        state, metrics = step(state, batch)
        history.append(jax.device_get(metrics))
    rec = [m["loss/rec"] for m in history]
    r_cls = [m["loss/r_cls"] for m in history[hp.pre_steps :]]
    assert np.mean(rec[-10:]) < 0.9 * np.mean(rec[:10]), (rec[:10], rec[-10:])
    assert np.mean(r_cls[-10:]) < 0.4 * np.mean(r_cls[:10]), (r_cls[:10], r_cls[-10:])
    assert np.mean([m["acc/r_real"] for m in history[-10:]]) > 0.9


def test_bad_config_values_name_the_key():
    config = tiny_config()
    config.variant = "FESR_XL"
    with pytest.raises(ValueError, match=r"variant='FESR_XL'.*allowed: .*FESR_JL"):
        make_hparams(config, 1)
    config = tiny_config()
    config.model.image_size = 48
    with pytest.raises(ValueError, match=r"model.image_size=48.*allowed: \(32, 64, 128\)"):
        build_networks(config.model)
    with pytest.raises(ValueError, match=r"train.batch_size=6 is not divisible.*4"):
        select_devices(4, 6)
    config = tiny_config()
    config.train.pre_epochs = 9
    with pytest.raises(ValueError, match=r"train\.pre_epochs=9"):
        make_hparams(config, 1)
    with pytest.raises(ValueError, match=r"train\.parallel=.vmap..*allowed"):
        parallel_runner(*setup(tiny_config())[:2], select_devices(1, 8), "vmap")
