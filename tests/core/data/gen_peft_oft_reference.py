"""Generates peft_oft_reference.safetensors: HF peft's own OFT (peft/tuners/oft) on small Linear and
Conv2d layers, for tests/core/test_peft_oft.c. Run with torch and peft installed:
    python3 gen_peft_oft_reference.py OUT_DIR
For each case <c>: <c>.weight, <c>.bias (the base layer), <c>.oft_R (adapter_model.safetensors'
value before the forward pass), <c>.x, <c>.wy, <c>.y (peft's unmerged forward), <c>.grad (d sum(y*wy)
/ d oft_R), <c>.oft_R_after (after the forward: COFT projects in place), <c>.y_merged and
<c>.weight_merged (after layer.merge()). The metadata holds the configs and peft's version."""
import json
import os
import sys

import peft
import torch
from peft import OFTConfig, get_peft_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file


class Lin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(12, 6)

    def forward(self, x):
        return self.lin(x)


class Conv(torch.nn.Module):
    def __init__(self, cin, cout, k, pad):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, k, padding=pad)

    def forward(self, x):
        return self.conv(x)


CASES = [
    ("lin_b4_neumann5", "lin", {"r": 0, "oft_block_size": 4, "use_cayley_neumann": True, "num_cayley_neumann_terms": 5}),
    ("lin_r3_exact", "lin", {"r": 3, "oft_block_size": 0, "use_cayley_neumann": False}),
    ("lin_b6_neumann2", "lin", {"r": 0, "oft_block_size": 6, "use_cayley_neumann": True, "num_cayley_neumann_terms": 2}),
    ("lin_b3_neumann7", "lin", {"r": 0, "oft_block_size": 3, "use_cayley_neumann": True, "num_cayley_neumann_terms": 7}),
    ("lin_share_b4_neumann3", "lin", {"r": 0, "oft_block_size": 4, "block_share": True, "use_cayley_neumann": True,
                                      "num_cayley_neumann_terms": 3}),
    ("lin_b5_adjusted", "lin", {"r": 0, "oft_block_size": 5}),
    ("lin_coft", "lin", {"r": 0, "oft_block_size": 4, "coft": True, "eps": 0.4}),
    ("lin_coft_share_exact", "lin", {"r": 0, "oft_block_size": 4, "coft": True, "eps": 0.2, "block_share": True,
                                     "use_cayley_neumann": False}),
    ("conv3x3_pad_b6_exact", "conv", {"r": 0, "oft_block_size": 6, "use_cayley_neumann": False}),   # overlapping patches
    ("conv1x1_b3", "conv", {"r": 0, "oft_block_size": 3}),
    ("conv2x2_single_patch_r3", "conv", {"r": 3, "oft_block_size": 0}),
]
CONV_SHAPES = {  # cin, cout, k, pad, input (N, C, H, W)
    "conv3x3_pad_b6_exact": (3, 4, 2, 1, (2, 3, 5, 4)),
    "conv1x1_b3": (3, 4, 1, 0, (2, 3, 5, 4)),
    "conv2x2_single_patch_r3": (3, 4, 2, 0, (2, 3, 2, 2)),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    torch.manual_seed(0)
    tensors, meta = {}, {"peft_version": peft.__version__, "torch_version": torch.__version__, "cases": {}}
    for name, kind, kw in CASES:
        if kind == "lin":
            net, x = Lin(), torch.randn(3, 12)
            layer_name = "lin"
        else:
            cin, cout, k, pad, shape = CONV_SHAPES[name]
            net, x = Conv(cin, cout, k, pad), torch.randn(*shape)
            layer_name = "conv"
        weight, bias = net.get_submodule(layer_name).weight.detach().clone(), net.get_submodule(layer_name).bias.detach().clone()
        cfg = OFTConfig(target_modules=[layer_name], init_weights=False, **kw)
        pm = get_peft_model(net, cfg)
        sd = get_peft_model_state_dict(pm)
        keys = sorted(sd)
        assert keys == [f"base_model.model.{layer_name}.oft_R.weight"], keys
        oft_R = sd[keys[0]].detach().clone()
        layer = pm.base_model.model.get_submodule(layer_name)
        p = layer.oft_R["default"].weight
        y = pm(x)
        wy = torch.randn_like(y)
        (y * wy).sum().backward()
        tensors.update({f"{name}.weight": weight, f"{name}.bias": bias, f"{name}.oft_R": oft_R, f"{name}.x": x,
                        f"{name}.wy": wy, f"{name}.y": y.detach(), f"{name}.grad": p.grad.detach().clone(),
                        f"{name}.oft_R_after": p.detach().clone()})
        with torch.no_grad():
            layer.merge()
            tensors[f"{name}.y_merged"] = pm(x).detach()
            tensors[f"{name}.weight_merged"] = layer.get_base_layer().weight.detach().clone()
        meta["cases"][name] = {"layer": layer_name, "config": kw, "r": layer.r["default"],
                               "oft_block_size": layer.oft_block_size["default"], "key": keys[0]}
        print(name, "r", layer.r["default"], "b", layer.oft_block_size["default"], "oft_R", tuple(oft_R.shape),
              "max|y - y_merged|", float((tensors[f"{name}.y"] - tensors[f"{name}.y_merged"]).abs().max()))
    tensors = {k: v.contiguous().float() for k, v in tensors.items()}
    save_file(tensors, os.path.join(out, "peft_oft_reference.safetensors"), metadata={"json": json.dumps(meta)})
    print("peft", peft.__version__, "torch", torch.__version__, len(tensors), "tensors")


if __name__ == "__main__":
    main()
