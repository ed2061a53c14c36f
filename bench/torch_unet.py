#!/usr/bin/env python3
"""PyTorch reference for `vkpeft bench unet`: diffusers' UNet2DConditionModel (SD 1.x / 2.x
shapes) written in plain PyTorch (diffusers is not needed), with diffusers' module and key names, so
it loads the folder `vkpeft bench unet --save DIR` writes (DIR/unet: config.json +
diffusion_pytorch_model.safetensors) with every key checked (missing and unused keys are errors).

Modes (one JSON line on stdout):
  --mode sample   one sampling step: the UNet on batch B (2B with --cfg: [uncond; cond]) + guidance
  --mode train    one LoRA training step: r 4 / alpha 4 on to_q, to_k, to_v, to_out.0 (hand-written
                  wrapper: x W^T + b + (alpha / r) B(A(x))), MSE against a noise target, backward,
                  gradient clipping to norm 1, AdamW (lr 1e-4, weight decay 0.01)
  --mode parity   noise_pred for the inputs of DIR/unet_io.safetensors in float64, compared with the
                  noise_pred vkpeft stored there: max |vkpeft - torch| / max |torch|
Attention is softmax(q k^T / sqrt(d)) v with the (T, T) matrix materialised per head (what diffusers'
AttnProcessor does on torch < 2, which has no scaled_dot_product_attention).

Usage: torch_unet.py --model DIR/unet [--mode sample|train|parity] [--io DIR/unet_io.safetensors]
                     [--latent 64] [--batch 1] [--cfg] [--steps 3] [--threads 2]
Needs: apt-get install -y python3-torch (Debian 12: 1.13) — a benchmark dependency only.
"""
import argparse
import gc
import json
import math
import resource
import statistics
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- safetensors (the package is not in Debian 12: read the format directly) --------------------

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I32": np.int32, "I64": np.int64}


def safetensors_entries(path):
    """name -> numpy array (float32; memory-mapped where the file holds f32)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        raw = mm[a:b]
        if e["dtype"] == "BF16":
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = raw.view(_DTYPES[e["dtype"]]).astype(np.float32, copy=False)
        out[name] = arr.reshape(e["shape"])
    return out


def load_safetensors(path):
    return {k: torch.from_numpy(np.array(v)) for k, v in safetensors_entries(path).items()}


def load_weights(model, path):
    """load_state_dict(strict=True) without a second copy of the model: one tensor at a time."""
    entries, state = safetensors_entries(path), model.state_dict()
    missing, unused = sorted(set(state) - set(entries)), sorted(set(entries) - set(state))
    if missing or unused:
        raise SystemExit(f"{path}: missing keys {missing[:5]}, unused keys {unused[:5]}")
    with torch.no_grad():
        for k, t in state.items():
            if tuple(t.shape) != tuple(entries[k].shape):
                raise SystemExit(f"{path}: {k} has shape {entries[k].shape}, the model {tuple(t.shape)}")
            t.copy_(torch.from_numpy(np.array(entries[k])))


# ---- the model (diffusers' names) ---------------------------------------------------------------


def timestep_embedding(t, dim, flip_sin_to_cos, shift):
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - shift)
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps, scale=1.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.scale = scale

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.scale


class Attention(nn.Module):
    def __init__(self, dim, heads, ctx_dim=None):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx_dim or dim, dim, bias=False)
        self.to_v = nn.Linear(ctx_dim or dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        B, T, C = x.shape
        H, D = self.heads, C // self.heads

        def split(t):
            return t.reshape(B, -1, H, D).permute(0, 2, 1, 3).reshape(B * H, -1, D)

        q, k, v = split(self.to_q(x)), split(self.to_k(ctx)), split(self.to_v(ctx))
        # diffusers' AttnProcessor: baddbmm with beta 0, softmax, bmm
        s = torch.baddbmm(torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=q.dtype), q, k.transpose(1, 2),
                          beta=0, alpha=D ** -0.5)
        o = torch.bmm(s.softmax(dim=-1), v)
        o = o.reshape(B, H, T, D).permute(0, 2, 1, 3).reshape(B, T, C)
        return self.to_out[0](o)


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, ctx_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, ctx_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, ctx):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), ctx)
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nn.Module):
    def __init__(self, C, heads, layers, ctx_dim, groups, linear):
        super().__init__()
        self.linear = linear
        self.norm = nn.GroupNorm(groups, C, eps=1e-6)
        self.proj_in = nn.Linear(C, C) if linear else nn.Conv2d(C, C, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(C, heads, ctx_dim) for _ in range(layers)])
        self.proj_out = nn.Linear(C, C) if linear else nn.Conv2d(C, C, 1)

    def forward(self, x, ctx):
        B, C, H, W = x.shape
        h = self.norm(x)
        if not self.linear:
            h = self.proj_in(h)
        h = h.permute(0, 2, 3, 1).reshape(B, H * W, C)
        if self.linear:
            h = self.proj_in(h)
        for blk in self.transformer_blocks:
            h = blk(h, ctx)
        if self.linear:
            h = self.proj_out(h)
        h = h.reshape(B, H, W, C).permute(0, 3, 1, 2)
        if not self.linear:
            h = self.proj_out(h)
        return h + x


class Sampler(nn.Module):   # Downsample2D / Upsample2D with a conv
    def __init__(self, C, down, padding=1):
        super().__init__()
        self.down = down
        self.conv = nn.Conv2d(C, C, 3, stride=2 if down else 1, padding=padding if down else 1)

    def forward(self, x):
        if self.down:
            return self.conv(x if self.conv.padding[0] else F.pad(x, (0, 1, 0, 1)))
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Block(nn.Module):   # (CrossAttn)DownBlock2D, (CrossAttn)UpBlock2D
    def __init__(self, resnets, attentions, sampler, name):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions:
            self.attentions = nn.ModuleList(attentions)
        if sampler is not None:
            setattr(self, name, nn.ModuleList([sampler]))


def per_block(v, n):
    return list(v) if isinstance(v, (list, tuple)) else [v] * n


class UNet2DConditionModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        boc = cfg["block_out_channels"]
        n = len(boc)
        heads = per_block(cfg.get("num_attention_heads") or cfg.get("attention_head_dim", 8), n)
        cross = per_block(cfg.get("cross_attention_dim", 1280), n)
        layers = per_block(cfg.get("layers_per_block", 2), n)
        tlayers = per_block(cfg.get("transformer_layers_per_block", 1), n)
        G, eps = cfg.get("norm_num_groups", 32), cfg.get("norm_eps", 1e-5)
        lin = cfg.get("use_linear_projection", False)
        self.flip, self.shift = cfg.get("flip_sin_to_cos", True), cfg.get("freq_shift", 0)
        T = cfg.get("time_embedding_dim") or 4 * boc[0]
        self.conv_in = nn.Conv2d(cfg.get("in_channels", 4), boc[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(boc[0], T)
        down = []
        for i, kind in enumerate(cfg["down_block_types"]):
            cin, cout = (boc[i - 1] if i else boc[0]), boc[i]
            res = [ResnetBlock2D(cin if l == 0 else cout, cout, T, G, eps) for l in range(layers[i])]
            att = ([Transformer2DModel(cout, heads[i], tlayers[i], cross[i], G, lin) for _ in range(layers[i])]
                   if kind.startswith("CrossAttn") else None)
            smp = Sampler(cout, True, cfg.get("downsample_padding", 1)) if i < n - 1 else None
            down.append(Block(res, att, smp, "downsamplers"))
        self.down_blocks = nn.ModuleList(down)
        self.mid_block = Block([ResnetBlock2D(boc[-1], boc[-1], T, G, eps, cfg.get("mid_block_scale_factor", 1))
                                for _ in range(2)],
                               [Transformer2DModel(boc[-1], heads[-1], tlayers[-1], cross[-1], G, lin)], None, "")
        rb, rh, rc, rl, rt = boc[::-1], heads[::-1], cross[::-1], layers[::-1], tlayers[::-1]
        up = []
        for i, kind in enumerate(cfg["up_block_types"]):
            prev, cout, cin = rb[i - 1] if i else rb[0], rb[i], rb[min(i + 1, n - 1)]
            nl = rl[i] + 1
            res = [ResnetBlock2D((prev if l == 0 else cout) + (cin if l == nl - 1 else cout), cout, T, G, eps)
                   for l in range(nl)]
            att = ([Transformer2DModel(cout, rh[i], rt[i], rc[i], G, lin) for _ in range(nl)]
                   if kind.startswith("CrossAttn") else None)
            up.append(Block(res, att, Sampler(cout, False) if i < n - 1 else None, "upsamplers"))
        self.up_blocks = nn.ModuleList(up)
        self.conv_norm_out = nn.GroupNorm(G, boc[0], eps=eps)
        self.conv_out = nn.Conv2d(boc[0], cfg.get("out_channels", 4), 3, padding=1)
        self.temb_in = boc[0]

    def forward(self, sample, timestep, ehs):
        temb = self.time_embedding(timestep_embedding(timestep, self.temb_in, self.flip, self.shift).to(sample.dtype))
        h = self.conv_in(sample)
        skips = [h]
        for blk in self.down_blocks:
            for l, res in enumerate(blk.resnets):
                h = res(h, temb)
                if hasattr(blk, "attentions"):
                    h = blk.attentions[l](h, ehs)
                skips.append(h)
            if hasattr(blk, "downsamplers"):
                h = blk.downsamplers[0](h)
                skips.append(h)
        h = self.mid_block.resnets[0](h, temb)
        h = self.mid_block.attentions[0](h, ehs)
        h = self.mid_block.resnets[1](h, temb)
        for blk in self.up_blocks:
            for l, res in enumerate(blk.resnets):
                h = res(torch.cat([h, skips.pop()], dim=1), temb)
                if hasattr(blk, "attentions"):
                    h = blk.attentions[l](h, ehs)
            if hasattr(blk, "upsamplers"):
                h = blk.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


# ---- LoRA ---------------------------------------------------------------------------------------


class LoRALinear(nn.Module):
    """x W^T + b + (alpha / r) B(A(x)): A kaiming-uniform (peft's default), B zero."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + self.scale * self.lora_B(self.lora_A(x))


def add_lora(model, r=4, alpha=4.0, targets=("to_q", "to_k", "to_v", "to_out.0")):
    for p in model.parameters():
        p.requires_grad_(False)
    for name, mod in list(model.named_modules()):
        for attr, child in list(mod.named_children()):
            full = f"{name}.{attr}" if name else attr
            if isinstance(child, nn.Linear) and any(full.endswith(t) for t in targets):
                setattr(mod, attr, LoRALinear(child, r, alpha))
    return [p for p in model.parameters() if p.requires_grad]


# ---- memory -------------------------------------------------------------------------------------


def reset_peak_rss():
    """Linux: restart the peak resident set (VmHWM) from the current one."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---- main ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--mode", choices=("sample", "train", "parity"), default="sample")
    ap.add_argument("--io")
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--cfg", action="store_true")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = json.load(open(f"{a.model}/config.json"))
    model = UNet2DConditionModel(cfg)
    load_weights(model, f"{a.model}/diffusion_pytorch_model.safetensors")
    reset_peak_rss()   # the weights file was memory-mapped: its pages are not the model's memory
    params = sum(p.numel() for p in model.parameters())
    out = {"bench": "torch_unet", "mode": a.mode, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "params": params}

    if a.mode == "parity":
        io = load_safetensors(a.io)
        model = model.double().eval()
        with torch.no_grad():
            ref = model(io["sample"].double(), io["timestep"].double(), io["encoder_hidden_states"].double())
        got = io["noise_pred"].double()
        err = (got - ref).abs()
        out.update({"shape": list(ref.shape), "max_abs_err": err.max().item(), "max_abs_ref": ref.abs().max().item(),
                    "max_rel_err": (err.max() / ref.abs().max()).item(),
                    "rms_rel_err": (err.pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item()})
        print(json.dumps(out))
        return

    cross = per_block(cfg.get("cross_attention_dim", 1280), 1)[0]
    nb = a.batch * (2 if a.cfg and a.mode == "sample" else 1)
    x = torch.randn(nb, cfg.get("in_channels", 4), a.latent, a.latent)
    t = torch.full((nb,), 500.0)
    ehs = torch.randn(nb, 77, cross)
    times = []
    if a.mode == "sample":
        model.eval()
        for _ in range(a.steps + 1):   # the first run warms up
            t0 = time.perf_counter()
            with torch.no_grad():
                pred = model(x, t, ehs)
                if a.cfg:
                    un, co = pred.chunk(2)
                    pred = un + 7.5 * (co - un)
            times.append(time.perf_counter() - t0)
    else:
        trainable = add_lora(model)
        out["trainable_params"] = sum(p.numel() for p in trainable)
        opt = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01)
        target = torch.randn(nb, cfg.get("out_channels", 4), a.latent, a.latent)
        model.train()
        for _ in range(a.steps + 1):
            t0 = time.perf_counter()
            loss = F.mse_loss(model(x, t, ehs), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
        out["loss"] = loss.item()
    out.update({"unet_batch": nb, "latent": a.latent, "first_run_s": round(times[0], 4),
                "step_s": round(statistics.median(times[1:]), 4), "step_min_s": round(min(times[1:]), 4),
                "peak_rss_bytes": peak_rss_bytes()})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
