"""Eager PyTorch reference of one stage-2 training iteration (FESR_JL), for speed comparison.

`python -m fergan.benchmarks.torch_reference --image_size 128 --batch 16 --steps 5` builds the same
networks as fergan (Tables I-II, LightCNN-29 v2 frozen) and times a straightforward eager
implementation of Algorithm 1's Dz, Dimg, R and G updates, printing one JSON line shaped like
`fergan.benchmarks.step`'s. torch is an optional extra (`pip install -e '.[torch]'`).
"""

import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from absl import flags
from torch import nn

from fergan.tools import cli
from tests.identity.torch_lightcnn import LightCNN29


def lrelu(x):
    return F.leaky_relu(x, 0.2)


class Genc(nn.Module):
    def __init__(self, size, c, n=64):
        super().__init__()
        chans = [64, 128, 256, 512, 1024][: int(math.log2(size)) - 2]
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        cin = c
        for ch in chans:
            self.convs.append(nn.Conv2d(cin, ch, 4, 2, 1, bias=False))
            self.norms.append(nn.InstanceNorm2d(ch, affine=True))
            cin = ch
        self.fc = nn.Linear(4 * 4 * cin, n)

    def forward(self, x):
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = lrelu(norm(conv(x)))
        return torch.tanh(self.fc(x.flatten(1)))


class Gdec(nn.Module):
    def __init__(self, size, c, n=64, k=7):
        super().__init__()
        enc = [64, 128, 256, 512, 1024][: int(math.log2(size)) - 2]
        self.top = enc[-1]
        self.fc = nn.Linear(n + k, 4 * self.top)
        self.deconvs = nn.ModuleList()
        self.norms = nn.ModuleList()
        cin = self.top
        for ch in [e // 2 for e in reversed(enc)]:
            self.deconvs.append(nn.ConvTranspose2d(cin, ch, 4, 2, 1, bias=False))
            self.norms.append(nn.InstanceNorm2d(ch, affine=True))
            cin = ch
        self.out = nn.ConvTranspose2d(cin, c, 4, 2, 1)

    def forward(self, code):
        x = self.fc(code).view(-1, self.top, 2, 2)
        for deconv, norm in zip(self.deconvs, self.norms, strict=True):
            x = F.relu(norm(deconv(x)))
        return torch.tanh(self.out(x))


class Dimg(nn.Module):
    def __init__(self, size, c, k=7):
        super().__init__()
        chans = [64, 128, 256, 512][: int(math.log2(size)) - 3]
        layers, cin = [], c
        for ch in chans:
            layers.append(nn.Conv2d(cin, ch, 4, 2, 1))
            cin = ch
        self.body = nn.ModuleList(layers)
        self.adv = nn.Conv2d(cin, 1, 4, 2, 1)
        self.cls1 = nn.Conv2d(cin, 1024, 4, 2, 1)
        self.cls2 = nn.Conv2d(1024, k, 4, 1, 0)

    def forward(self, x):
        for conv in self.body:
            x = lrelu(conv(x))
        return self.adv(x).mean((1, 2, 3)), self.cls2(lrelu(self.cls1(x))).flatten(1)


class RHead(nn.Module):
    def __init__(self, size, k=7):
        super().__init__()
        self.conv1 = nn.Conv2d(192, 256, 3, 2, 1)
        self.conv2 = nn.Conv2d(256, 512, 3, 2, 1)
        side = size // 32
        self.fc1 = nn.Linear(side * side * 512, 2048)
        self.fc2 = nn.Linear(2048, 512)
        self.cls = nn.Linear(512, k)

    def extract(self, t):
        h = F.relu(self.conv2(F.relu(self.conv1(t))))
        return F.relu(self.fc2(F.relu(self.fc1(h.flatten(1)))))


def trunk(net, x):
    """LightCNN-29 v2 conv1..pool3."""
    x = net.pool(net.conv1(x))
    x = net.pool(net.group1(net.block1(x)))
    return net.pool(net.group2(net.block2(x)))


def to_id(x):
    return (x + 1) * 0.5


def code(y, v):
    return v * (2 * F.one_hot(y, v.shape[1]).float() - 1)


def dist(a, b):
    return (a - b).pow(2).sum(1).clamp_min(1e-12).sqrt().mean()


def iteration(nets, opts, x, y, x_pr, y_t, k, n=64):
    genc, gdec, dimg, dz, light, rhead = nets
    b = x.shape[0]
    z = torch.rand(b, n) * 2 - 1
    v_t, v_rec, v_pf = torch.rand(b, k), torch.rand(b, k), torch.rand(b, k)
    # 1. Dz step.
    with torch.no_grad():
        g = genc(x)
        x_hat = gdec(torch.cat([g, code(y_t, v_t)], 1))
    loss_dz = F.binary_cross_entropy_with_logits(dz(z), torch.ones(b, 1)) + (
        F.binary_cross_entropy_with_logits(dz(g), torch.zeros(b, 1))
    )
    opts["dz"].zero_grad()
    loss_dz.backward()
    opts["dz"].step()
    # 2. Dimg step with WGAN-GP.
    adv_real, logits_real = dimg(x)
    adv_fake, _ = dimg(x_hat)
    t = torch.rand(b, 1, 1, 1)
    mix = (t * x + (1 - t) * x_hat).requires_grad_(True)
    grad = torch.autograd.grad(dimg(mix)[0].sum(), mix, create_graph=True)[0]
    gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    loss_d = adv_fake.mean() - adv_real.mean() + 10 * gp + F.cross_entropy(logits_real, y)
    opts["dimg"].zero_grad()
    loss_d.backward()
    opts["dimg"].step()
    # 3. R step on real, partner and synthetic faces.
    with torch.no_grad():
        x_pf = gdec(torch.cat([z, code(y, v_pf)], 1))
        t_x, t_pr, t_pf = (
            trunk(light, to_id(x)),
            trunk(light, to_id(x_pr)),
            trunk(light, to_id(x_pf)),
        )
    f_x, f_pr, f_pf = (rhead.extract(t) for t in (t_x, t_pr, t_pf))
    cls = F.cross_entropy(rhead.cls(F.dropout(f_x, 0.5)), y)
    cls = cls + F.cross_entropy(rhead.cls(F.dropout(f_pf, 0.5)), y)
    loss_r = 0.001 * (dist(f_x, f_pr) + dist(f_x.detach(), f_pf)) + cls
    opts["r"].zero_grad()
    loss_r.backward()
    opts["r"].step()
    # 4. G step.
    g = genc(x)
    x_hat = gdec(torch.cat([g, code(y_t, v_t)], 1))
    x_rec = gdec(torch.cat([g, code(y, v_rec)], 1))
    x_pf = gdec(torch.cat([z, code(y, v_pf)], 1))
    adv_fake, logits_fake = dimg(x_hat)
    with torch.no_grad():
        f_id_x = light(to_id(x))[1]
    f_id_rec = light(to_id(x_rec))[1]
    r_logits = rhead.cls(F.dropout(rhead.extract(trunk(light, to_id(x_pf))), 0.5))
    loss_g = (
        -adv_fake.mean()
        + F.binary_cross_entropy_with_logits(dz(g), torch.ones(b, 1))
        + 10 * (x - x_rec).abs().mean()
        + 5 * (f_id_rec - f_id_x).abs().mean()
        + F.cross_entropy(logits_fake, y_t)
        + F.cross_entropy(r_logits, y)
    )
    opts["g"].zero_grad()
    loss_g.backward()
    opts["g"].step()


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """--image_size, --batch, --steps, --threads."""
    fv = flag_values
    flags.DEFINE_integer("image_size", 128, "Image height = width in pixels.", flag_values=fv)
    flags.DEFINE_integer("batch", 16, "Batch size.", flag_values=fv)
    flags.DEFINE_integer("steps", 5, "Timed iterations after one warm-up.", flag_values=fv)
    flags.DEFINE_integer("threads", 0, "torch threads (0 = default).", flag_values=fv)


def main(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> int:
    """The program, given argv = [program] after flag parsing; prints one JSON line."""
    if len(argv) > 1:
        return cli.error(f"unexpected arguments: {' '.join(argv[1:])}")
    if flag_values.threads:
        torch.set_num_threads(flag_values.threads)
    torch.manual_seed(0)
    s, k, c = flag_values.image_size, 7, 1
    genc, gdec = Genc(s, c), Gdec(s, c)
    dimg = Dimg(s, c)
    dz = nn.Sequential(
        nn.Linear(64, 64), nn.LeakyReLU(0.2), nn.Linear(64, 32), nn.LeakyReLU(0.2),
        nn.Linear(32, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1),
    )  # fmt: skip
    light = LightCNN29(version=2, num_classes=80013, grid=s // 16).eval()
    for p in light.parameters():
        p.requires_grad_(False)
    rhead = RHead(s, k)
    adam = lambda params: torch.optim.Adam(params, lr=1e-4, betas=(0.5, 0.999))
    opts = {
        "g": adam(list(genc.parameters()) + list(gdec.parameters())),
        "dimg": adam(dimg.parameters()),
        "dz": adam(dz.parameters()),
        "r": adam(rhead.parameters()),
    }
    rng = np.random.default_rng(0)
    b = flag_values.batch
    x = torch.tensor(rng.uniform(-1, 1, (b, c, s, s)), dtype=torch.float32)
    x_pr = torch.tensor(rng.uniform(-1, 1, (b, c, s, s)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, k, b))
    y_t = (y + torch.tensor(rng.integers(1, k, b))) % k
    nets = (genc, gdec, dimg, dz, light, rhead)
    iteration(nets, opts, x, y, x_pr, y_t, k)  # warm-up
    times = []
    for _ in range(flag_values.steps):
        start = time.perf_counter()
        iteration(nets, opts, x, y, x_pr, y_t, k)
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    print(json.dumps({
        "impl": "torch_eager", "stage": 2, "batch": b, "image_size": s,
        "threads": torch.get_num_threads(), "step_ms_median": round(1e3 * median, 2),
        "images_per_s": round(b / median, 2),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    cli.run(main, define_flags)
