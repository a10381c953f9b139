#!/usr/bin/python3
"""Writes tests/fixtures/sched/sched_ref.json: an independent torch/numpy re-derivation of the
diffusers scheduler classes sdgen follows (docs/SEMANTICS.md §5, §6, §9; diffusers 0.25.1 DDIM,
DDPM, Euler, Euler ancestral; 0.27.0 DPM-Solver++ 2M), for what the golden cases do not cover:
spacings, Karras for the Euler classes, ddpm, v-prediction with the sigma samplers, img2img
with sigma samplers. Written from the documented formulas (torch float32 0-d tensors for the
step arithmetic, numpy float64 for the set-up, as the classes do it).

Run with the reference environment's interpreter: /usr/bin/python3 scripts/make-sched-fixtures.py
(numpy 1.x: its value-based casting makes _sigma_to_t float32, see src/sched.c).
"""
import json, os, sys
import numpy as np
import torch

T = 1000
torch.set_num_threads(1)
betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float32) ** 2
ac = torch.cumprod(1.0 - betas, dim=0)
sig_table = np.array(((1 - ac) / ac) ** 0.5)          # float32
log_sig = np.log(sig_table)                            # float32


def sigma_to_t(sigma):
    ls = np.log(np.maximum(sigma, 1e-10))
    dists = ls - log_sig[:, np.newaxis]
    low = np.cumsum((dists >= 0), axis=0).argmax(axis=0).clip(max=log_sig.shape[0] - 2)
    high = low + 1
    lo, hi = log_sig[low], log_sig[high]
    w = np.clip((lo - ls) / (lo - hi), 0, 1)
    t = (1 - w) * low + w * high
    return t.reshape(np.shape(sigma))


def karras(smin, smax, n):
    ramp = np.linspace(0, 1, n)
    lo, hi = smin ** (1 / 7.0), smax ** (1 / 7.0)
    return (hi + ramp * (lo - hi)) ** 7.0


def timesteps_for(sampler, spacing, n):
    if sampler == "dpmpp_2m":
        if spacing == "linspace":
            return np.linspace(0, T - 1, n + 1).round()[::-1][:-1].copy().astype(np.int64)
        if spacing == "leading":
            r = T // (n + 1)
            return (np.arange(0, n + 1) * r).round()[::-1][:-1].copy().astype(np.int64) + 1
        return np.arange(T, 0, -T / n).round().copy().astype(np.int64) - 1
    intt = sampler in ("ddim", "ddpm")
    if spacing == "linspace":
        if intt:
            return np.linspace(0, T - 1, n).round()[::-1].copy().astype(np.int64)
        return np.linspace(0, T - 1, n, dtype=np.float32)[::-1].copy()
    if spacing == "leading":
        r = T // n
        t = (np.arange(0, n) * r).round()[::-1].copy()
        return (t.astype(np.int64) + 1) if intt else (t.astype(np.float32) + 1)
    t = np.round(np.arange(T, 0, -T / n))
    return (t.astype(np.int64) - 1) if intt else (t.astype(np.float32) - 1)


def schedule(sampler, sched, spacing, n):
    t = timesteps_for(sampler, spacing, n)
    if len(t) != n:
        return None
    out = {"sampler": sampler, "schedule": sched, "spacing": spacing, "steps": n}
    ins = 1.0
    if sampler in ("euler", "euler_a", "dpmpp_2m"):
        if sampler == "dpmpp_2m":
            if sched == "karras":
                s = karras(float(sig_table[0]), float(sig_table[-1]), n)
                t = np.array([sigma_to_t(x) for x in s]).round().astype(np.int64)
            else:
                s = np.interp(t, np.arange(0, T), sig_table)
        else:
            s = np.interp(t, np.arange(0, T), sig_table)
            if sched == "karras":
                s = karras(s[-1].item(), s[0].item(), n)
                t = np.array([sigma_to_t(x) for x in s]).astype(np.float32)
        s = np.concatenate([s, [0.0]]).astype(np.float32)
        out["sigmas"] = [float(v) for v in s]
        if sampler != "dpmpp_2m":
            mx = torch.from_numpy(s).max()
            ins = float(mx if spacing in ("linspace", "trailing") else (mx ** 2 + 1) ** 0.5)
    out["timesteps"] = [float(v) for v in np.asarray(t, dtype=np.float64)]
    out["init_noise_sigma"] = ins
    return out


def f(x):
    return torch.tensor(x, dtype=torch.float32)


def run(name, sampler, sched, spacing, pred, n, strength=None, seed=0):
    sc = schedule(sampler, sched, spacing, n)
    g = torch.Generator().manual_seed(seed)
    N = 32
    t_all = sc["timesteps"]
    sig_all = torch.tensor(sc.get("sigmas", [0.0]), dtype=torch.float32)
    t_start = 0
    if strength is not None:
        init_timestep = min(int(n * strength), n)
        t_start = max(n - init_timestep, 0)
    ts = t_all[t_start:]
    # sigma index of the first step: index_for_timestep (second match when repeated)
    idx = [k for k, v in enumerate(t_all) if v == ts[0]]
    k0 = idx[1] if len(idx) > 1 else idx[0]
    x = torch.randn(N, generator=g) * 3
    res = {"name": name, "sampler": sampler, "schedule": sched, "spacing": spacing, "prediction": pred,
           "steps": n, "x": [], "g": [], "z": []}
    if strength is not None:
        res["strength"] = strength
        enc = torch.randn(N, generator=g)
        noise = torch.randn(N, generator=g)
        if sampler in ("ddim", "ddpm"):
            a = ac[int(ts[0])]
            x = a ** 0.5 * enc + (1 - a) ** 0.5 * noise
        elif sampler == "dpmpp_2m":
            s = sig_all[k0]
            al = 1 / ((s ** 2 + 1) ** 0.5)
            x = al * enc + (s * al) * noise
        else:
            x = enc + noise * sig_all[k0]
        res["enc"] = [float(v) for v in enc]
        res["noise"] = [float(v) for v in noise]
    res["x"].append([float(v) for v in x])
    prev_x0 = None
    for i, t in enumerate(ts):
        k = k0 + i
        m = torch.randn(N, generator=g)
        z = None
        if sampler in ("ddim", "ddpm"):
            t = int(t)
            pt = t - T // n
            a = ac[t]
            if sampler == "ddim":
                ap = ac[pt] if pt >= 0 else ac[0]
                b = 1 - a
                if pred == "eps":
                    x0 = (x - b ** 0.5 * m) / a ** 0.5
                    e = m
                else:
                    x0 = a ** 0.5 * x - b ** 0.5 * m
                    e = a ** 0.5 * m + b ** 0.5 * x
                x = ap ** 0.5 * x0 + (1 - ap - f(0.0) ** 2) ** 0.5 * e
            else:
                ap = ac[pt] if pt >= 0 else f(1.0)
                b, bp = 1 - a, 1 - ap
                ca = a / ap
                cb = 1 - ca
                x0 = (x - b ** 0.5 * m) / a ** 0.5 if pred == "eps" else a ** 0.5 * x - b ** 0.5 * m
                c0 = (ap ** 0.5 * cb) / b
                c1 = ca ** 0.5 * bp / b
                x = c0 * x0 + c1 * x
                if t > 0:
                    z = torch.randn(N, generator=g)
                    var = (1 - ap) / (1 - a) * (1 - a / ap)
                    var = torch.clamp(var, min=1e-20)
                    x = x + var ** 0.5 * z
        elif sampler in ("euler", "euler_a"):
            s = sig_all[k]
            if sampler == "euler":
                z = torch.randn(N, generator=g)
            x0 = x - s * m if pred == "eps" else m * (-s / (s ** 2 + 1) ** 0.5) + (x / (s ** 2 + 1))
            d = (x - x0) / s
            if sampler == "euler":
                x = x + d * (sig_all[k + 1] - s)
            else:
                st = sig_all[k + 1]
                up = (st ** 2 * (s ** 2 - st ** 2) / s ** 2) ** 0.5
                down = (st ** 2 - up ** 2) ** 0.5
                x = x + d * (down - s)
                z = torch.randn(N, generator=g)
                x = x + z * up
        else:
            def ast(sv):
                al = 1 / ((sv ** 2 + 1) ** 0.5)
                return al, sv * al
            a0, s0 = ast(sig_all[k])
            at, st = ast(sig_all[k + 1])
            x0 = (x - s0 * m) / a0 if pred == "eps" else a0 * x - s0 * m
            lt = torch.log(at) - torch.log(st)
            l0 = torch.log(a0) - torch.log(s0)
            h = lt - l0
            last = k == n - 1
            if prev_x0 is None or last:
                x = (st / s0) * x - (at * (torch.exp(-h) - 1.0)) * x0
            else:
                a1, s1 = ast(sig_all[k - 1])
                l1 = torch.log(a1) - torch.log(s1)
                r0 = (l0 - l1) / h
                D1 = (1.0 / r0) * (x0 - prev_x0)
                x = (st / s0) * x - (at * (torch.exp(-h) - 1.0)) * x0 - 0.5 * (at * (torch.exp(-h) - 1.0)) * D1
            prev_x0 = x0
        res["g"].append([float(v) for v in m])
        res["z"].append([] if z is None else [float(v) for v in z])
        res["x"].append([float(v) for v in x])
    return res


def main():
    out = {"note": "generated by scripts/make-sched-fixtures.py (torch %s, numpy %s)" % (torch.__version__, np.__version__),
           "schedules": [], "runs": []}
    for sampler in ("ddim", "ddpm", "euler", "euler_a", "dpmpp_2m"):
        for sched in ("default", "karras"):
            if sched == "karras" and sampler in ("ddim", "ddpm"):
                continue
            for spacing in ("leading", "linspace", "trailing"):
                for n in (1, 2, 3, 4, 7, 10, 16, 20, 25, 30, 50, 61, 97):
                    e = schedule(sampler, sched, spacing, n)
                    if e is not None:
                        out["schedules"].append(e)
    R = out["runs"]
    R.append(run("ddpm-eps-5", "ddpm", "default", "leading", "eps", 5, seed=1))
    R.append(run("ddpm-v-4", "ddpm", "default", "leading", "v", 4, seed=2))
    R.append(run("ddpm-trailing-6", "ddpm", "default", "trailing", "eps", 6, seed=3))
    R.append(run("ddpm-img2img-10x0.7", "ddpm", "default", "leading", "eps", 10, strength=0.7, seed=4))
    R.append(run("ddim-linspace-7", "ddim", "default", "linspace", "eps", 7, seed=5))
    R.append(run("euler-v-4", "euler", "default", "linspace", "v", 4, seed=6))
    R.append(run("euler-karras-6", "euler", "karras", "linspace", "eps", 6, seed=7))
    R.append(run("euler_a-v-5", "euler_a", "default", "linspace", "v", 5, seed=8))
    R.append(run("euler_a-karras-leading-7", "euler_a", "karras", "leading", "eps", 7, seed=9))
    R.append(run("euler-img2img-10x0.5", "euler", "default", "linspace", "eps", 10, strength=0.5, seed=10))
    R.append(run("dpmpp-default-8", "dpmpp_2m", "default", "linspace", "eps", 8, seed=11))
    R.append(run("dpmpp-karras-v-20", "dpmpp_2m", "karras", "linspace", "v", 20, seed=12))
    R.append(run("dpmpp-img2img-12x0.5", "dpmpp_2m", "karras", "linspace", "eps", 12, strength=0.5, seed=13))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "sched", "sched_ref.json")
    # float32 values in their shortest round-trip form keep the file small
    def enc(o):
        if isinstance(o, float):
            return str(np.float32(o)) if np.float32(o) == o else repr(o)
        if isinstance(o, list):
            return "[" + ",".join(enc(v) for v in o) + "]"
        if isinstance(o, dict):
            return "{" + ",".join(json.dumps(k) + ":" + enc(v) for k, v in o.items()) + "}"
        return json.dumps(o)
    with open(path, "w") as fh:
        fh.write(enc(out))
    print("wrote", path, len(out["schedules"]), "schedules,", len(R), "runs")


if __name__ == "__main__":
    main()
