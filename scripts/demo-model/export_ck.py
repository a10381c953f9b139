"""Export a diffusion checkpoint of train.py to a .safetensors file, choosing the EMA or the raw weights.

train.py exports the EMA weights (decay 0.999, i.e. an average over the last ~1,000 steps). Right after a
change in what the model learns (a new aid, a grown architecture) that average lags behind; evaluate both
(evaluate.py --torch on each export) and ship the better one.

  /usr/bin/python3 scripts/demo-model/export_ck.py STATE_DIR OUT.safetensors [--raw]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe      # noqa: E402
import export   # noqa: E402
import models   # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("state")
    ap.add_argument("out")
    ap.add_argument("--raw", action="store_true", help="the raw weights instead of the EMA")
    a = ap.parse_args()
    merges = bpe.merges_text(bpe.build_merges())
    tok = bpe.Tokenizer(merges)
    nets = models.build(tok.vocab_size)
    vae_ck = torch.load(os.path.join(a.state, "vae.pt"))
    assert vae_ck["done"], "the VAE phase is not finished"
    nets["vae"].load_state_dict(vae_ck["vae"])
    info = {"elapsed": dict(vae_ck["elapsed"])}
    dec = os.path.join(a.state, "decoder.pt")
    if os.path.exists(dec):
        d = torch.load(dec)
        nets["vae"].decoder.load_state_dict(d["decoder"])
        nets["vae"].post_quant_conv.load_state_dict(d["post_quant_conv"])
        info["decoder_ft_steps"] = d["step"]
        info["elapsed"]["decoder_ft"] = d["elapsed"]
    ck = torch.load(os.path.join(a.state, "diffusion.pt"))
    pre = "" if a.raw else "ema_"
    nets["unet"].load_state_dict(ck[pre + "unet"])
    nets["text"].load_state_dict(ck[pre + "text"])
    info["diffusion_steps"] = ck["step"]
    info["elapsed"].update(ck["elapsed"])
    info["tag"] = "raw" if a.raw else "ema"
    export.export(a.out, nets, merges, info)
    print("wrote", a.out, os.path.getsize(a.out), "bytes, step", ck["step"], info["tag"])


if __name__ == "__main__":
    main()
