"""PyTorch side of bench/train_step.sh and scripts/gpu-check.sh: the same
networks as ours (WaveNet regressor, Xception-style galaxy classifier,
ResNet-50), defined layer for layer as in train/src/wavenet.rs and
train/src/model.rs, timed over the same training step (forward, loss,
backward, SGD with momentum) on random data of the same shape, with the same
number of intra-op threads, on the CPU or a GPU (`--device cuda`, with
`--precision bf16` for bf16 autocast and `--channels-last`).

Prints one JSON line: median seconds per step and samples per second.
"""

import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class WaveNet(nn.Module):
    def __init__(self, cin=2, ch=32, sk=64, layers=8, stacks=2, stride=8, out=3):
        super().__init__()
        self.front = nn.Conv1d(cin, ch, stride, stride=stride)
        self.dilations = []
        self.layers = nn.ModuleList()
        for _ in range(stacks):
            for l in range(layers):
                d = 2**l
                self.dilations.append(d)
                self.layers.append(nn.ModuleDict(dict(
                    filter=nn.Conv1d(ch, ch, 2, dilation=d),
                    gate=nn.Conv1d(ch, ch, 2, dilation=d),
                    res=nn.Conv1d(ch, ch, 1),
                    skip=nn.Conv1d(ch, sk, 1))))
        self.post1 = nn.Conv1d(sk, sk, 1)
        self.post2 = nn.Conv1d(sk, sk, 1)
        self.head = nn.Linear(sk, out)

    def forward(self, x):
        h = self.front(x)
        skips = None
        for d, l in zip(self.dilations, self.layers):
            p = F.pad(h, (d, 0))
            z = torch.tanh(l["filter"](p)) * torch.sigmoid(l["gate"](p))
            s = l["skip"](z)
            skips = s if skips is None else skips + s
            h = h + l["res"](z)
        s = self.post2(F.relu(self.post1(F.relu(skips))))
        return self.head(s.mean(-1))


class SepConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.pw(self.dw(x)))


class XceptionMini(nn.Module):
    def __init__(self, cin=3, classes=2, w=16, middle=2):
        super().__init__()
        self.stem1 = nn.Conv2d(cin, w, 3, stride=2, padding=1, bias=False)
        self.stem1_bn = nn.BatchNorm2d(w)
        self.stem2 = nn.Conv2d(w, 2 * w, 3, padding=1, bias=False)
        self.stem2_bn = nn.BatchNorm2d(2 * w)
        self.entry = nn.ModuleList()
        for ci, co in [(2 * w, 4 * w), (4 * w, 8 * w)]:
            self.entry.append(nn.ModuleDict(dict(
                sep1=SepConv(ci, co), sep2=SepConv(co, co),
                skip=nn.Conv2d(ci, co, 1, stride=2, bias=False),
                skip_bn=nn.BatchNorm2d(co))))
        self.middle = nn.ModuleList(
            nn.ModuleList(SepConv(8 * w, 8 * w) for _ in range(3)) for _ in range(middle))
        self.exit = SepConv(8 * w, 16 * w)
        self.classifier = nn.Linear(16 * w, classes)

    def forward(self, x):
        x = F.relu(self.stem1_bn(self.stem1(x)))
        x = F.relu(self.stem2_bn(self.stem2(x)))
        for b in self.entry:
            short = b["skip_bn"](b["skip"](x))
            y = b["sep2"](F.relu(b["sep1"](x)))
            x = F.max_pool2d(y, 3, 2, 1) + short
        for block in self.middle:
            y = x
            for sep in block:
                y = sep(F.relu(y))
            x = x + y
        x = F.relu(self.exit(x))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    def __init__(self, cin=3, classes=1000, w=64):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        blocks, c = [], w
        for stage, n in enumerate([3, 4, 6, 3]):
            planes = w << stage
            for b in range(n):
                blocks.append(Bottleneck(c, planes, 2 if stage > 0 and b == 0 else 1))
                c = planes * 4
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layers(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="wavenet", choices=["wavenet", "xception_mini", "resnet50"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--samples", type=int, default=2050)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: autocast to bfloat16 (fp32 master weights)")
    ap.add_argument("--channels-last", action="store_true",
                    help="2-D networks in channels-last memory format")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    torch.backends.cudnn.benchmark = dev.type == "cuda"
    if a.model == "wavenet":
        net = WaveNet()
        x = torch.randn(a.batch, 2, a.samples)
        y = torch.randn(a.batch, 3)
        loss_of = lambda out: ((out - y) ** 2).mean()
    else:
        classes = 1000 if a.model == "resnet50" else 2
        net = ResNet50(w=a.width) if a.model == "resnet50" else XceptionMini(w=a.width)
        x = torch.randn(a.batch, 3, a.size, a.size)
        y = torch.randint(classes, (a.batch,))
        loss_of = lambda out: F.cross_entropy(out.float(), y)
    net, x, y = net.to(dev), x.to(dev), y.to(dev)
    if a.channels_last and x.dim() == 4:
        net, x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(a.warmup + a.steps):
        t = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            out = net(x)
        loss = loss_of(out)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    step = times[len(times) // 2]
    print(json.dumps({
        "model": a.model, "threads": a.threads, "batch": a.batch,
        "device": str(dev), "precision": a.precision, "channels_last": a.channels_last,
        "parameters": sum(p.numel() for p in net.parameters()),
        "step_seconds": step, "samples_per_second": a.batch / step,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
