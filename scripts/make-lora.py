#!/usr/bin/env python3
"""make-lora.py — an mkckpt manifest for a kohya/A1111 LoRA of a given checkpoint (test and benchmark data).

    make-lora.py MODEL.safetensors OUT.json [--rank R] [--dtype F32|F16] [--only unet|te1|te2] [--no-alpha]

Reads the checkpoint's header (no weights) and lists, for every module a kohya LoRA can patch, the tensors
`<prefix><module>.lora_down.weight` [R, in(, kh, kw)], `.lora_up.weight` [out, R(, 1, 1)] and `.alpha` []
with the names kohya's trainers write:
  * SD 1.x / 2.x: `lora_unet_` + the diffusers module path with '.' as '_' (the mapping diffusers'
    single-file loader inverts, golden README §10.2), `lora_te_text_model_encoder_layers_N_…`;
  * SDXL (sd-scripts' sdxl_train_network): `lora_unet_` + the LDM module path (`input_blocks_4_1_…`),
    `lora_te1_…` for the CLIP ViT-L tower and `lora_te2_…` for the OpenCLIP bigG tower under transformers'
    names (q/k/v_proj are the row blocks of OpenCLIP's in_proj_weight, fc1/fc2 are c_fc/c_proj).
Modules: the attention projections, feed-forward, proj_in/out, resnet conv1/conv2/time_emb_proj/
conv_shortcut and the down/up-sampler convolutions. `mkckpt OUT.json LORA.safetensors 0` then fills the
values with its rule (0-D alpha = ln 100, others uniform with std 1/sqrt(fan_in)), as for the reference files.
"""
import argparse
import json
import re
import struct
import sys


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h


def diffusers_unet_module(body, up_attn):
    """LDM U-Net module path (SD 1.x/2.x layout: 2 res blocks per level) -> diffusers path, or None."""
    m = re.match(r"input_blocks\.(\d+)\.(\d+)\.(.*)$", body)
    if m:
        b, k, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        if b == 0:
            return None
        i, j = (b - 1) // 3, (b - 1) % 3
        if j == 2:
            return f"down_blocks.{i}.downsamplers.0.conv" if rest == "op" else None
        return (f"down_blocks.{i}.resnets.{j}." + resnet_leaf(rest)) if k == 0 else f"down_blocks.{i}.attentions.{j}.{rest}"
    m = re.match(r"middle_block\.(\d+)\.(.*)$", body)
    if m:
        k, rest = int(m.group(1)), m.group(2)
        if k == 1:
            return f"mid_block.attentions.0.{rest}"
        return f"mid_block.resnets.{k // 2}." + resnet_leaf(rest)
    m = re.match(r"output_blocks\.(\d+)\.(\d+)\.(.*)$", body)
    if m:
        b, k, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        i, j = b // 3, b % 3
        if k == 0:
            return f"up_blocks.{i}.resnets.{j}." + resnet_leaf(rest)
        if rest == "conv":
            return f"up_blocks.{i}.upsamplers.0.conv"
        return f"up_blocks.{i}.attentions.{j}.{rest}"
    return None


def resnet_leaf(rest):
    return {"in_layers.2": "conv1", "out_layers.3": "conv2", "emb_layers.1": "time_emb_proj",
            "skip_connection": "conv_shortcut"}.get(rest, "?" + rest)


LEAF = re.compile(r"(attn[12]\.to_(q|k|v|out\.0)|ff\.net\.(0\.proj|2)|proj_in|proj_out|in_layers\.2|out_layers\.3|"
                  r"emb_layers\.1|skip_connection|op|\d+\.conv)$")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--dtype", default="F32")
    ap.add_argument("--only", choices=["unet", "te1", "te2"])
    ap.add_argument("--no-alpha", action="store_true")
    a = ap.parse_args()
    h = header(a.model)
    sdxl = any(k.startswith("conditioner.embedders.") for k in h)
    r = a.rank
    tensors = []

    def add(name, out_shape_w):
        shape = out_shape_w
        if len(shape) == 4:
            down, up = [r, shape[1], shape[2], shape[3]], [shape[0], r, 1, 1]
        else:
            down, up = [r, shape[1]], [shape[0], r]
        if not a.no_alpha:
            tensors.append([name + ".alpha", a.dtype, []])
        tensors.append([name + ".lora_down.weight", a.dtype, down])
        tensors.append([name + ".lora_up.weight", a.dtype, up])

    U = "model.diffusion_model."
    if a.only in (None, "unet"):
        for k, v in h.items():
            if not k.startswith(U) or not k.endswith(".weight") or len(v["shape"]) not in (2, 4):
                continue
            body = k[len(U):-len(".weight")]
            if not LEAF.search(body) or body.startswith(("time_embed", "label_emb", "out.", "input_blocks.0.")):
                continue
            mod = body if sdxl else diffusers_unet_module(body, None)
            if mod is None or "?" in mod:
                continue
            add("lora_unet_" + mod.replace(".", "_"), v["shape"])
    towers = []
    if sdxl:
        towers = [("te1", "conditioner.embedders.0.transformer.text_model.", "hf"),
                  ("te2", "conditioner.embedders.1.model.", "openclip")]
    elif any(k.startswith("cond_stage_model.transformer.text_model.") for k in h):
        towers = [("te", "cond_stage_model.transformer.text_model.", "hf")]
    elif any(k.startswith("cond_stage_model.model.") for k in h):
        towers = [("te", "cond_stage_model.model.", "openclip")]
    for tag, pre, kind in towers:
        if a.only and a.only != ("te1" if tag == "te" else tag):
            continue
        for k, v in h.items():
            if not k.startswith(pre):
                continue
            rest = k[len(pre):]
            if kind == "hf":
                m = re.match(r"encoder\.layers\.(\d+)\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])\.weight$", rest)
                if m:
                    add(f"lora_{tag}_text_model_encoder_layers_{m.group(1)}_{m.group(2).replace('.', '_')}", v["shape"])
                continue
            m = re.match(r"transformer\.resblocks\.(\d+)\.(attn\.in_proj_weight|attn\.out_proj\.weight|mlp\.c_fc\.weight|"
                         r"mlp\.c_proj\.weight)$", rest)
            if not m:
                continue
            n, leaf = m.group(1), m.group(2)
            base = f"lora_{tag}_text_model_encoder_layers_{n}_"
            if leaf == "attn.in_proj_weight":
                c = v["shape"][0] // 3
                for q in ("q", "k", "v"):
                    add(base + f"self_attn_{q}_proj", [c, v["shape"][1]])
            else:
                add(base + {"attn.out_proj.weight": "self_attn_out_proj", "mlp.c_fc.weight": "mlp_fc1",
                            "mlp.c_proj.weight": "mlp_fc2"}[leaf], v["shape"])
    tensors.sort(key=lambda t: t[0])
    meta = {"format": "pt", "ss_network_dim": str(r)}
    with open(a.out, "w") as f:
        json.dump({"metadata": meta, "tensors": tensors}, f, indent=0)
    n = sum(1 for t in tensors if t[0].endswith("lora_down.weight"))
    print(f"{a.out}: {n} modules, rank {r}", file=sys.stderr)


if __name__ == "__main__":
    main()
