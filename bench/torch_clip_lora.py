#!/usr/bin/env python3
"""PyTorch reference for the CLIP contrastive LoRA step of bench/compare_clip_torch.sh.

Plain PyTorch CLIP with transformers' CLIPModel math (pre-LN blocks, quick_gelu, causal + padding
mask in the text tower, pooling at the end token, class-token pooling with pre/post LayerNorm in
the vision tower, projections without bias, learnable logit_scale), in the shape of the demo's
small CLIP (configs/clip_demo_pretrain.json): vision 32 px, patch 8, width 64, 2 layers, 2 heads,
MLP 256; text vocabulary 49,408, 24 positions, width 64, 2 layers, 2 heads, MLP 256; projection 64.
Frozen base; hand-written LoRA (r 8, alpha 16, A kaiming-uniform, B zero) on q_proj and v_proj of
both towers, as vkpeft's `peft: [{"method": "lora", "r": 8, "target_modules": ["q_proj", "v_proj"]}]`.
A step: zero grads, forward of both towers on a batch of B pairs (random pixels; random captions
of 4-12 tokens padded to 24), symmetric InfoNCE, backward, clip the global norm to 1, AdamW
(lr 5e-4, betas 0.9/0.98, wd 0.1), read the loss. pairs/s = B / median step time after --warmup
untimed steps. Peak memory: resource.getrusage(RUSAGE_SELF).ru_maxrss. Prints one JSON object.
"""
import argparse, json, math, resource, statistics, sys, time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.stderr.write("torch_clip_lora.py: PyTorch is not installed: apt-get install -y python3-torch\n")
    sys.exit(2)


class LoRALinear(nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, d, heads, mlp):
        super().__init__()
        self.h = heads
        self.layer_norm1, self.layer_norm2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, mlp), nn.Linear(mlp, d)

    def forward(self, x, mask=None):
        B, T, D = x.shape
        h = self.layer_norm1(x)
        sh = lambda t: t.view(B, T, self.h, D // self.h).transpose(1, 2)
        q, k, v = sh(self.q_proj(h)) * (D // self.h) ** -0.5, sh(self.k_proj(h)), sh(self.v_proj(h))
        a = q @ k.transpose(-1, -2)
        if mask is not None:
            a = a + mask
        o = (a.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.out_proj(o)
        return x + self.fc2(quick_gelu(self.fc1(self.layer_norm2(x))))


class CLIP(nn.Module):
    def __init__(self, a):
        super().__init__()
        D, P = a.width, a.proj
        self.patch = nn.Conv2d(3, D, a.patch, a.patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(D) * 0.02)
        self.vpos = nn.Embedding((a.image // a.patch) ** 2 + 1, D)
        self.pre_layrnorm, self.post_layernorm = nn.LayerNorm(D), nn.LayerNorm(D)
        self.vblocks = nn.ModuleList(Block(D, a.heads, a.mlp) for _ in range(a.layers))
        self.tok = nn.Embedding(a.vocab, D)
        self.tpos = nn.Embedding(a.tokens, D)
        self.tblocks = nn.ModuleList(Block(D, a.heads, a.mlp) for _ in range(a.layers))
        self.final_layer_norm = nn.LayerNorm(D)
        self.visual_projection, self.text_projection = nn.Linear(D, P, bias=False), nn.Linear(D, P, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))

    def forward(self, pixels, ids, attn, eos_pos):
        x = self.patch(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], 1) + self.vpos.weight
        x = self.pre_layrnorm(x)
        for b in self.vblocks:
            x = b(x)
        img = self.visual_projection(self.post_layernorm(x[:, 0]))
        B, T = ids.shape
        t = self.tok(ids) + self.tpos.weight[:T]
        causal = torch.full((T, T), float("-inf")).triu(1)
        mask = (causal + torch.log(attn.float())[:, None, :])[:, None]
        for b in self.tblocks:
            t = b(t, mask)
        t = self.final_layer_norm(t)
        txt = self.text_projection(t[torch.arange(B), eos_pos])
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        logits = self.logit_scale.exp() * img @ txt.t()
        y = torch.arange(B)
        return (F.cross_entropy(logits, y) + F.cross_entropy(logits.t(), y)) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--image", type=int, default=32)
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--mlp", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--vocab", type=int, default=49408)
    ap.add_argument("--proj", type=int, default=64)
    ap.add_argument("--r", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = CLIP(a)
    for p in m.parameters():
        p.requires_grad_(False)
    for blocks in (m.vblocks, m.tblocks):
        for b in blocks:
            b.q_proj, b.v_proj = LoRALinear(b.q_proj, a.r, 2 * a.r), LoRALinear(b.v_proj, a.r, 2 * a.r)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(a.batch, 3, a.image, a.image, generator=g)
    lens = torch.randint(4, 13, (a.batch,), generator=g)
    ids = torch.randint(1, 49406, (a.batch, a.tokens), generator=g)
    ar = torch.arange(a.tokens)
    ids[:, 0] = 49406
    ids[ar[None] == (lens - 1)[:, None]] = 49407
    attn = (ar[None] < lens[:, None]).long()
    ids = ids * attn
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = m(pixels, ids, attn, lens - 1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss.item()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({"framework": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "batch": a.batch, "steps": a.steps, "step_ms": round(1000 * med, 2),
                      "steps_per_s": round(1 / med, 3), "pairs_per_s": round(a.batch / med, 1),
                      "trainable_params": sum(p.numel() for p in params),
                      "total_params": sum(p.numel() for p in m.parameters()),
                      "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "loss": round(loss.item(), 4)}))


if __name__ == "__main__":
    main()
