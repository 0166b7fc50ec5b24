"""PyTorch LightCNN-29 checkpoints -> Flax: numerical equivalence and clear errors."""

from __future__ import annotations

import os
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'fergan[torch]')")

from configs import default  # noqa: E402
from fergan.identity.convert import read_checkpoint  # noqa: E402
from fergan.identity.network import identity_network  # noqa: E402
from fergan.identity.weights import load_identity_params, read_identity_metadata  # noqa: E402
from fergan.models import LightCNN29  # noqa: E402
from fergan.tools import cli, convert_lightcnn  # noqa: E402
from tests.identity import torch_lightcnn  # noqa: E402

NUM_CLASSES = 10


def convert_cli(*argv: str) -> int:
    """`python -m fergan.tools.convert_lightcnn <argv>`, in this process: its exit status."""
    return cli.call(convert_lightcnn.main, convert_lightcnn.define_flags, argv)


def _torch_model(version: int, image_size: int):
    torch.manual_seed(version)
    return torch_lightcnn.LightCNN29(version, NUM_CLASSES, grid=image_size // 16).eval()


def _run_both(model, params, version, image_size):
    """(torch logits, torch fc, flax logits, flax fc) on the same random [0, 1] inputs."""
    x = np.random.default_rng(0).uniform(size=(2, 1, image_size, image_size)).astype(np.float32)
    with torch.no_grad():
        t_logits, t_fc = model(torch.from_numpy(x))
    f_logits, f_fc = LightCNN29(1.0, NUM_CLASSES, version=version).apply(
        {"params": params}, jnp.asarray(x.transpose(0, 2, 3, 1))
    )
    return t_logits.numpy(), t_fc.numpy(), np.asarray(f_logits), np.asarray(f_fc)


@pytest.fixture(scope="module")
def v2_release(tmp_path_factory):
    """The v2 architecture at 128 px with random weights, saved in the release format."""
    d = tmp_path_factory.mktemp("v2")
    model = _torch_model(2, 128)
    path = os.fspath(d / "LightCNN_29Layers_V2_checkpoint.pth.tar")
    torch_lightcnn.save_release_checkpoint(model, path)
    return model, path, d


def _restore_full(path):
    """The saved tree including fc2, for comparing logits too."""
    import orbax.checkpoint as ocp

    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckpt:
        return ckpt.restore(path, args=ocp.args.Composite(params=ocp.args.StandardRestore()))[
            "params"
        ]


def test_v2_release_checkpoint_is_numerically_equivalent(v2_release, capsys):
    model, ckpt, d = v2_release
    out = os.fspath(d / "converted")
    assert convert_cli(ckpt, out) == 0
    assert "v2" in capsys.readouterr().out
    meta = read_identity_metadata(out)
    assert meta["version"] == 2 and meta["num_classes"] == NUM_CLASSES
    assert meta["num_tensors"] == len(model.state_dict())
    t_logits, t_fc, f_logits, f_fc = _run_both(model, _restore_full(out), 2, 128)
    assert f_fc.shape == (2, 256)
    assert t_fc.std() > 1e-2  # The comparison is not between near-zero outputs.
    assert np.abs(f_fc - t_fc).max() < 1e-4
    assert np.abs(f_logits - t_logits).max() < 1e-4

    # What training loads: the paper-size identity tree without fc2, same features.
    config = default.get_config()
    identity = identity_network(config)
    params = load_identity_params(out, identity, config.model.image_size)
    assert "fc2" not in params
    feature = identity.apply(
        {"params": params},
        jnp.asarray(np.random.default_rng(0).uniform(size=(2, 1, 128, 128)).transpose(0, 2, 3, 1)),
        method=LightCNN29.identity_feature,
    )
    assert np.abs(np.asarray(feature) - t_fc).max() < 1e-4


def test_v1_checkpoint_is_numerically_equivalent(tmp_path):
    # network_29layers at 32 px (fc input 2*2*128): auto-detected from fc.filter.
    model = _torch_model(1, 32)
    ckpt = os.fspath(tmp_path / "v1.pth.tar")
    torch_lightcnn.save_release_checkpoint(model, ckpt)
    out = os.fspath(tmp_path / "converted")
    assert convert_cli(ckpt, out, "--image_size", "32") == 0
    assert read_identity_metadata(out)["version"] == 1
    t_logits, t_fc, f_logits, f_fc = _run_both(model, _restore_full(out), 1, 32)
    assert t_fc.std() > 1e-3
    assert np.abs(f_fc - t_fc).max() < 1e-4
    assert np.abs(f_logits - t_logits).max() < 1e-4


def _save_variant(model, path, edit):
    state = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    edit(state)
    torch.save({"epoch": 1, "state_dict": state}, path)
    return os.fspath(path)


def test_missing_tensor_is_named(v2_release, tmp_path):
    model, _, _ = v2_release
    ckpt = _save_variant(
        model, tmp_path / "c.pth", lambda s: s.pop("module.block2.1.conv2.filter.bias")
    )
    with pytest.raises(ValueError, match=r"missing tensor block2\.1\.conv2\.filter\.bias") as e:
        convert_lightcnn.convert(ckpt, os.fspath(tmp_path / "out"))
    assert ckpt in str(e.value)
    assert not os.path.exists(tmp_path / "out")


def test_extra_tensor_is_named(v2_release, tmp_path):
    model, _, _ = v2_release

    def add(s):
        s["module.block5.0.conv1.filter.weight"] = torch.zeros(3, 3)

    ckpt = _save_variant(model, tmp_path / "c.pth", add)
    with pytest.raises(ValueError, match=r"extra tensor block5\.0\.conv1\.filter\.weight"):
        convert_lightcnn.convert(ckpt, os.fspath(tmp_path / "out"))


def test_wrong_shape_names_both_shapes(v2_release, tmp_path):
    model, _, _ = v2_release

    def reshape(s):
        s["module.group3.conv_a.filter.weight"] = torch.zeros(384, 192, 3, 3)

    ckpt = _save_variant(model, tmp_path / "c.pth", reshape)
    with pytest.raises(ValueError) as e:
        convert_lightcnn.convert(ckpt, os.fspath(tmp_path / "out"))
    msg = str(e.value)
    assert "group3.conv_a.filter.weight" in msg
    assert "(384, 192, 3, 3)" in msg and "(384, 192, 1, 1)" in msg


def test_wrong_image_size_points_at_fc(v2_release, tmp_path):
    _, ckpt, _ = v2_release
    with pytest.raises(ValueError, match=r"fc\.weight.*\(256, 8192\).*\(256, 2048\)"):
        convert_lightcnn.convert(ckpt, os.fspath(tmp_path / "out"), image_size=64)


def test_files_that_are_not_checkpoints(tmp_path, capsys):
    garbage = tmp_path / "random.pth.tar"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    not_torch = tmp_path / "other.zip"
    with zipfile.ZipFile(not_torch, "w") as z:
        z.writestr("readme.txt", "not a checkpoint")
    strings = tmp_path / "strings.pth"
    torch.save({"state_dict": {"fc.weight": "text"}}, strings)
    for path, pattern in (
        (garbage, "not a readable PyTorch checkpoint"),
        (not_torch, "not a readable PyTorch checkpoint"),
        (strings, "not tensors"),
    ):
        with pytest.raises(ValueError, match=pattern) as e:
            read_checkpoint(os.fspath(path))
        assert os.fspath(path) in str(e.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(os.fspath(tmp_path / "absent.pth"))
    # The CLI reports the same errors with a non-zero status instead of a traceback.
    assert convert_cli(os.fspath(garbage), os.fspath(tmp_path / "out")) == 1
    assert "random.pth.tar" in capsys.readouterr().err


def test_existing_output_needs_overwrite(v2_release, tmp_path, capsys):
    _, ckpt, _ = v2_release
    out = tmp_path / "out"
    out.mkdir()
    assert convert_cli(ckpt, os.fspath(out)) == 1
    assert "already exists" in capsys.readouterr().err
