#!/usr/bin/env python3
"""The ref-cnn of docs/performance.md in PyTorch (CPU), printing one line in the same format as
`cargo run --release --example bench_ref_cnn`, so the two can be compared in one run:

    python3 benches/ref_cnn_pytorch.py
    ref-cnn backend=pytorch train=<img/s> infer256=<img/s> infer1=<img/s>

Training: Adam 1e-3, batch 128, cross-entropy, after 2 warm-up steps. Inference: eval mode
(batch norm with running statistics, dropout off) under torch.inference_mode().
LEMO_BENCH_SECONDS (default 20) bounds each measurement, as in the Rust example.
Needs a CPU build of torch (the PyPI wheel pulls several GB of CUDA libraries).
"""
import os
import time

import torch
from torch import nn


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class RefCnn(nn.Module):
    def __init__(self, classes=100):
        super().__init__()
        self.b1, self.b2 = block(3, 64), block(64, 64)
        self.b3, self.b4 = block(64, 128), block(128, 128)
        self.b5 = block(128, 256)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(256, classes)

    def forward(self, x):
        x = self.pool(self.b2(self.b1(x)))
        a = self.b3(x)
        x = self.pool(self.b4(a) + a)
        x = self.b5(x).mean(dim=(2, 3))
        return self.fc(self.drop(x))


def main():
    budget = float(os.environ.get("LEMO_BENCH_SECONDS", "20"))
    torch.manual_seed(0)
    model = RefCnn()
    assert sum(p.numel() for p in model.parameters()) == 582_308
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(128, 3, 32, 32)
    y = torch.randint(0, 100, (128,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    model.train()
    for _ in range(2):
        step()
    start, steps = time.perf_counter(), 0
    while steps < 3 or (time.perf_counter() - start < budget and steps < 50):
        step()
        steps += 1
    train = steps * 128 / (time.perf_counter() - start)

    model.eval()

    def infer(batch, warmup, max_runs):
        xb = torch.randn(batch, 3, 32, 32)
        with torch.inference_mode():
            for _ in range(warmup):
                model(xb)
            start, runs = time.perf_counter(), 0
            while runs < 3 or (time.perf_counter() - start < budget / 2 and runs < max_runs):
                model(xb)
                runs += 1
        return runs * batch / (time.perf_counter() - start)

    infer256 = infer(256, 1, 40)
    infer1 = infer(1, 10, 2000)
    print(f"ref-cnn backend=pytorch train={train:.0f} infer256={infer256:.0f} infer1={infer1:.0f}")


if __name__ == "__main__":
    main()
