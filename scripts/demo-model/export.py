"""Write/read the demo model as one SD 1.x LDM single-file checkpoint (.safetensors).

Float weights are stored F16 (size budget); the DDPM schedule buffers (F32 [1000], as real SD 1.x files carry
them; inference does not use them) and text_model.embeddings.position_ids (I64 [1,77]) are included so the
file looks like every other SD 1.x single file. The BPE merges (CLIP merges.txt format) are stored in the
metadata under "sdgen.bpe_merges".
"""
import json

import numpy as np
import torch

import models
import st_io


def schedule_buffers():
    # LDM DDPM.register_schedule with linear_start 0.00085, linear_end 0.012 ("linear" there = sqrt-linear,
    # i.e. diffusers' scaled_linear), v_posterior 0
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    alphas = 1.0 - betas
    acp = np.cumprod(alphas)
    acp_prev = np.append(1.0, acp[:-1])
    post_var = betas * (1.0 - acp_prev) / (1.0 - acp)
    buf = {
        "betas": betas, "alphas_cumprod": acp, "alphas_cumprod_prev": acp_prev,
        "sqrt_alphas_cumprod": np.sqrt(acp), "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - acp),
        "log_one_minus_alphas_cumprod": np.log(1.0 - acp), "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / acp),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / acp - 1), "posterior_variance": post_var,
        "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(acp_prev) / (1.0 - acp),
        "posterior_mean_coef2": (1.0 - acp_prev) * np.sqrt(alphas) / (1.0 - acp),
    }
    return {k: torch.from_numpy(v.astype(np.float32)) for k, v in buf.items()}


def export(path, nets, merges_txt, info):
    tensors = {}
    for part, net in nets.items():
        for n, v in net.state_dict().items():
            tensors[models.PREFIX[part] + n] = v.detach().to(torch.float16)
    tensors["cond_stage_model.transformer.text_model.embeddings.position_ids"] = \
        torch.arange(77, dtype=torch.int64)[None]
    tensors.update(schedule_buffers())
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in models.CFG.items()}
    meta = {
        "modelspec.architecture": "stable-diffusion-v1",
        "modelspec.prediction_type": "epsilon",
        "modelspec.title": "sdgen demo",
        "modelspec.description": "Tiny SD 1.x-layout text-to-image model trained by sdgen on procedural "
                                 "64x64 shape scenes (see models/README.md)",
        "modelspec.resolution": "64x64",
        "sdgen.bpe_merges": merges_txt,
        "sdgen.demo.config": json.dumps(cfg),
        "sdgen.demo.diffusion_steps": str(info["diffusion_steps"]),
        "sdgen.demo.elapsed": json.dumps({k: round(v, 1) for k, v in info["elapsed"].items()}),
        "sdgen.demo.default_size": "64",
        "format": "pt",
    }
    if "tag" in info:
        meta["sdgen.demo.weights"] = "raw" if info["tag"] == "raw" else "ema"
    if "decoder_ft_steps" in info:
        meta["sdgen.demo.decoder_ft_steps"] = str(info["decoder_ft_steps"])
    st_io.save(path, tensors, meta)


def load_file(path):
    return st_io.load(path)


def load_into(nets, tensors):
    for part, net in nets.items():
        pre = models.PREFIX[part]
        sd = {n[len(pre):]: v for n, v in tensors.items() if n.startswith(pre) and not n.endswith("position_ids")}
        net.load_state_dict(sd)


def load_model(path):
    """-> (nets dict with eval-mode float32 modules, bpe.Tokenizer, metadata)"""
    import bpe
    t, meta = load_file(path)
    tok = bpe.Tokenizer(meta["sdgen.bpe_merges"])
    # the architecture the file was trained with (files before 2026-11-26 17:20 had attention at level 0 only)
    cfg = dict(models.CFG)
    if "sdgen.demo.config" in meta:
        cfg.update({k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(meta["sdgen.demo.config"]).items()})
    nets = models.build(tok.vocab_size, cfg)
    load_into(nets, t)
    for n in nets.values():
        n.eval()
    return nets, tok, meta
