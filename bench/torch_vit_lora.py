#!/usr/bin/env python3
"""PyTorch reference for `vkpeft bench peft --config demo|vit-s`: training throughput of a ViT.

The model has the shape of the demo's fine-tuning stage (configs/mnist_pretrain.json and
configs/fashion_lora.json): image 28, patch 7, 1 channel, hidden 64, 4 layers, 4 heads, MLP 128,
10 labels, pre-norm blocks with exact GELU and LayerNorm eps 1e-6, written out as transformers'
ViTForImageClassification computes it (eager attention, dropout 0). Methods:
  lora_all  frozen base; hand-written LoRA (r 8, alpha 16, dropout 0, A kaiming-uniform, B zero)
            on query, key, value, attention output, fc1 and fc2 of every block; the classifier
            trains (modules_to_save) — as vkpeft's `lora_all`;
  lora      LoRA (r 8, alpha 16) on query and value only, classifier trains — vkpeft's `lora`;
  full      every parameter trains — as vkpeft's `full`.
--config vit-s: ViT-S/16 instead (image 224, patch 16, 3 channels, hidden 384, 12 layers, 6 heads,
MLP 1536, 1000 labels, default batch 32), as `vkpeft bench peft --config vit-s`; random data only.
A step is what vkpeft's step does: zero the gradients, forward, cross-entropy, backward, clip the
global gradient norm to 1, AdamW (lr 1e-3, weight decay 0.01), read the loss. The timed steps
follow --warmup untimed ones; images/s = batch / median step time. Prints one JSON object.

Threads: torch.set_num_threads(--threads) sizes torch's OpenMP pool. Debian's torch does its matrix
products in OpenBLAS, which has its own thread pool (OPENBLAS_NUM_THREADS, default one per core);
the two pools spin-wait and, when any other process wants a core, a step can get 10-100x slower.
OPENBLAS_NUM_THREADS=1 keeps the total at --threads and is far less sensitive to other load.

Needs PyTorch (Debian: apt-get install -y python3-torch, which is 1.13; any later one works).
"""
import argparse
import gzip
import json
import math
import os
import platform
import statistics
import struct
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.stderr.write("torch_vit_lora.py: PyTorch is not installed: apt-get install -y python3-torch "
                     "(Debian 12 ships 1.13) or pip install torch\n")
    sys.exit(2)

LORA_TARGETS = ("query", "key", "value", "attn_out", "fc1", "fc2")


class LoRALinear(nn.Module):
    """y = x W^T + b + (alpha / r) * (x A^T) B^T with W, b frozen (peft's lora.Linear, dropout 0)."""

    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


class Block(nn.Module):
    """transformers' ViTLayer: pre-norm attention and MLP, each with a residual."""

    def __init__(self, hidden, heads, mlp, eps):
        super().__init__()
        self.heads = heads
        self.ln_before = nn.LayerNorm(hidden, eps=eps)
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.ln_after = nn.LayerNorm(hidden, eps=eps)
        self.fc1 = nn.Linear(hidden, mlp)
        self.fc2 = nn.Linear(mlp, hidden)

    def forward(self, x):
        B, T, C = x.shape
        h = self.ln_before(x)
        d = C // self.heads

        def split(t):
            return t.view(B, T, self.heads, d).transpose(1, 2)

        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_out(ctx)
        return x + self.fc2(F.gelu(self.fc1(self.ln_after(x))))


class ViT(nn.Module):
    def __init__(self, image=28, patch=7, channels=1, hidden=64, layers=4, heads=4, mlp=128, labels=10, eps=1e-6):
        super().__init__()
        self.patch = nn.Conv2d(channels, hidden, patch, stride=patch)
        n = (image // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, hidden) * 0.02)
        self.layers = nn.ModuleList(Block(hidden, heads, mlp, eps) for _ in range(layers))
        self.final_ln = nn.LayerNorm(hidden, eps=eps)
        self.classifier = nn.Linear(hidden, labels)
        for m in self.modules():   # transformers' ViT init: normal(0, 0.02), zero biases
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, px):
        x = self.patch(px).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.layers:
            x = blk(x)
        return self.classifier(self.final_ln(x)[:, 0])


def add_lora(model, r, alpha, targets=LORA_TARGETS):
    for p in model.parameters():
        p.requires_grad_(False)
    for blk in model.layers:
        for name in targets:
            setattr(blk, name, LoRALinear(getattr(blk, name), r, alpha))
    for p in model.classifier.parameters():
        p.requires_grad_(True)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    nd = magic & 0xFF
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return torch.frombuffer(bytearray(data[4 + 4 * nd:]), dtype=torch.uint8).view(*dims)


def batches(kind, batch, count, seed, image=28, channels=1, labels=10):
    g = torch.Generator().manual_seed(seed)
    if kind == "random":   # as vkpeft bench peft: pixels uniform in [-1, 1), uniform labels
        px = torch.rand(batch, channels, image, image, generator=g) * 2 - 1
        lab = torch.randint(0, labels, (batch,), generator=g)
        return [(px, lab)]
    root = "/usr/share/datasets/fashion-mnist"
    try:
        img = read_idx(os.path.join(root, "train-images-idx3-ubyte.gz"))
        lab = read_idx(os.path.join(root, "train-labels-idx1-ubyte.gz")).long()
    except OSError as e:
        sys.stderr.write(f"torch_vit_lora.py: {e}: install dataset-fashion-mnist (apt-get install dataset-fashion-mnist)\n")
        sys.exit(2)
    x = img.float().div_(255)
    x = ((x - x.mean()) / x.std()).unsqueeze(1)
    idx = torch.randperm(x.shape[0], generator=g)[: batch * count]
    return [(x[idx[i * batch:(i + 1) * batch]].contiguous(), lab[idx[i * batch:(i + 1) * batch]])
            for i in range(count)]


def _uses_openblas():
    try:
        with open("/proc/self/maps") as f:
            return "openblas" in f.read()
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=["demo", "vit-s"], default="demo")
    ap.add_argument("--method", choices=["lora_all", "lora", "full"], default="lora_all")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    ap.add_argument("--batch", type=int, default=0, help="default 64 (demo), 32 (vit-s)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--data", choices=["random", "fashion-mnist"], default="random")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    vit_s = a.config == "vit-s"
    if a.batch == 0:
        a.batch = 32 if vit_s else 64
    if vit_s and a.data != "random":
        ap.error("--config vit-s runs on random data only")
    if a.steps < 1 or a.warmup < 0 or a.batch < 1 or a.threads < 1:
        ap.error("--steps, --batch and --threads must be positive, --warmup non-negative")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    shape = dict(image=224, patch=16, channels=3, hidden=384, layers=12, heads=6, mlp=1536, labels=1000,
                 eps=1e-12) if vit_s else {}
    model = ViT(**shape)
    if a.method == "lora_all":
        add_lora(model, a.r, a.alpha)
    elif a.method == "lora":
        add_lora(model, a.r, a.alpha, ("query", "value"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    data = batches(a.data, a.batch, 16, a.seed, *((224, 3, 1000) if vit_s else (28, 1, 10)))

    times, cpu = [], []
    for i in range(a.warmup + a.steps):
        px, lab = data[i % len(data)]
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(px), lab)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        value = loss.item()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    med = statistics.median(times)
    print(json.dumps({
        "framework": "pytorch", "torch": torch.__version__, "python": platform.python_version(),
        "config": a.config, "method": a.method, "data": a.data, "batch": a.batch, "steps": a.steps, "warmup": a.warmup,
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        # Debian's torch does its matrix products in OpenBLAS, whose own thread pool is sized by
        # OPENBLAS_NUM_THREADS (default: one per core), not by torch.set_num_threads.
        "blas": "openblas" if _uses_openblas() else "other",
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "trainable_params": sum(p.numel() for p in params),
        "total_params": sum(p.numel() for p in model.parameters()),
        "step_ms": med * 1e3, "step_ms_mean": statistics.mean(times) * 1e3,
        "step_cpu_ms": statistics.median(cpu) * 1e3,
        "images_per_s": a.batch / med, "loss": value,
        "loadavg": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
