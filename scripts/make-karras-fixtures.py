#!/usr/bin/python3
"""Writes tests/fixtures/sched/karras_ref.json: the Karras σ lists and timesteps of the samplers whose
diffusers 0.25.1 classes take `use_karras_sigmas=True` besides Euler / Euler a / DPM-Solver++ (those are in
sched_ref.json): HeunDiscreteScheduler, LMSDiscreteScheduler, KDPM2DiscreteScheduler,
KDPM2AncestralDiscreteScheduler and UniPCMultistepScheduler (docs/SEMANTICS.md §5.3).

No torch and no diffusers here: an independent numpy re-derivation of what those classes' set_timesteps
compute. The set-up is numpy float64 in the classes too (np.interp, Karras ρ = 7, _sigma_to_t), so it
is reproduced exactly; the few float32 torch steps (the KDPM2 classes' σ_up / σ_down and interpolated
σ̂ = exp(lerp(log σ, log σ', ½)), and the timesteps of σ̂) are done in numpy float32. Only torch's
log/exp (SLEEF) differ from numpy's float32 log/exp, by an ulp: the test compares σ̂ and its timesteps
with a tolerance and everything else bit for bit.

ᾱ comes from the golden data (its alphas_cumprod.npy is the reference's own float32 table), so
the σ table is the reference's exactly.

    /usr/bin/python3 scripts/make-karras-fixtures.py [SHARED_DIR]     (default ../shared)

numpy 1.x is required: its value-based casting makes parts of _sigma_to_t float32.
"""
import json, os, sys
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared")
AC = np.load(os.path.join(SHARED, "golden", "cases", "p1-tiny-sd1-ddim", "alphas_cumprod.npy")).astype(np.float32)
T = AC.shape[0]
SIG_TABLE = np.sqrt((np.float32(1) - AC) / AC)         # float32, as ((1 − ᾱ)/ᾱ) ** 0.5 in torch
LOG_SIG = np.log(SIG_TABLE)                            # float32 (np.log of a float32 array)


def t_from_sigma(sigma, log_sigmas):
    """diffusers _sigma_to_t for one numpy float64 σ: piecewise-linear in log σ between the two
    neighbouring table entries, clamped; the same numpy expressions, so the same dtypes."""
    ls = np.log(np.maximum(sigma, 1e-10))
    d = ls - log_sigmas[:, np.newaxis]
    k = np.cumsum(d >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    lo, hi = log_sigmas[k], log_sigmas[k + 1]
    w = np.clip((lo - ls) / (lo - hi), 0, 1)
    return ((1 - w) * k + w * (k + 1)).reshape(np.shape(sigma))


def t_from_sigma_f32(sigma32):
    """The KDPM2 classes' _sigma_to_t on a float32 torch σ̂ against torch log_sigmas: numpy's log of
    the float32 value, then float32 torch arithmetic for the distances, the weight and t."""
    if sigma32 != sigma32:
        return float("nan")
    ls = np.log(np.maximum(np.float32(sigma32), np.float32(1e-10)))
    d = (ls - LOG_SIG).astype(np.float32)
    k = int(np.cumsum(d >= 0).argmax())
    k = min(k, T - 2)
    lo, hi = LOG_SIG[k], LOG_SIG[k + 1]
    w = np.float32((lo - ls) / (lo - hi))
    w = np.float32(min(max(w, np.float32(0)), np.float32(1)))
    a = np.float32(np.float32(1) - w) * np.float32(k)
    b = w * np.float32(k + 1)
    return float(np.float32(a + b))


def karras(smin, smax, n):
    ramp = np.linspace(0, 1, n)
    lo, hi = smin ** (1 / 7.0), smax ** (1 / 7.0)
    return (hi + ramp * (lo - hi)) ** 7.0


def spacing_timesteps(spacing, n):
    """Euler-type classes (float32 timesteps); steps_offset 1 as the SD 1.5 config has."""
    if spacing == "linspace":
        return np.linspace(0, T - 1, n, dtype=np.float32)[::-1].copy()
    if spacing == "leading":
        r = T // n
        return (np.arange(0, n) * r).round()[::-1].copy().astype(np.float32) + 1
    t = np.arange(T, 0, -T / n).round().copy().astype(np.float32) - 1
    return t if len(t) == n else None


def f32(v):
    return [float(np.float32(x)) for x in v]


def schedule(sampler, spacing, n):
    e = {"sampler": sampler, "schedule": "karras", "spacing": spacing, "steps": n}
    if sampler == "unipc":
        # UniPCMultistepScheduler 0.25.1: Karras over the flipped σ table, rounded timesteps, and the
        # list ends with a repeat of its last σ.
        s = karras(float(SIG_TABLE[0]), float(SIG_TABLE[-1]), n)
        t = np.array([t_from_sigma(x, LOG_SIG) for x in s]).round()
        e["timesteps"] = [float(v) for v in t.astype(np.int64)]
        e["sigmas"] = f32(np.concatenate([s, s[-1:]]).astype(np.float32))
        e["init_noise_sigma"] = 1.0
        return e
    t0 = spacing_timesteps(spacing, n)
    if t0 is None:
        return None
    s = np.interp(t0, np.arange(0, T), SIG_TABLE)
    s = karras(s[-1].item(), s[0].item(), n)
    t = np.array([t_from_sigma(x, LOG_SIG) for x in s])
    if sampler in ("dpm2", "dpm2_a"):
        t = t.round()
    sf = np.concatenate([s, [0.0]]).astype(np.float32)          # n + 1, float32
    if sampler == "lms":
        e["timesteps"] = f32(t)
        e["sigmas"] = f32(sf)
    elif sampler == "heun":
        e["timesteps"] = f32(np.concatenate([t[:1], np.repeat(t[1:], 2)]))
        e["sigmas"] = f32(np.concatenate([sf[:1], np.repeat(sf[1:-1], 2), sf[-1:]]))
    else:
        if sampler == "dpm2":
            prev = np.roll(sf, 1)
            with np.errstate(divide="ignore", invalid="ignore"):   # log 0 = −inf; σ̂_0 is NaN, unused
                li, lp = np.log(sf), np.log(prev)
                interp = np.exp(lp - (lp - li) * np.float32(0.5)).astype(np.float32)
            up = down = None
        else:
            nxt = np.roll(sf, -1)
            nxt[-1] = 0
            with np.errstate(invalid="ignore"):   # 0/0 at σ_n = 0: NaN, as in torch
                up = np.sqrt(nxt * nxt * (sf * sf - nxt * nxt) / (sf * sf)).astype(np.float32)
                down = np.sqrt(nxt * nxt - up * up).astype(np.float32)
            down[-1] = 0
            with np.errstate(divide="ignore", invalid="ignore"):
                li, ld = np.log(sf), np.log(down)
                interp = np.exp(ld - (ld - li) * np.float32(0.5)).astype(np.float32)
            interp[-2:] = 0

        def il(a):
            return np.concatenate([a[:1], np.repeat(a[1:], 2), a[-1:]])
        e["sigmas"] = f32(il(sf))
        e["sigmas_interpol"] = f32(il(interp))
        if up is not None:
            e["sigmas_up"] = f32(il(up))
            e["sigmas_down"] = f32(il(down))
        ti = [t_from_sigma_f32(v) for v in interp]
        mid = ti[1:-1] if sampler == "dpm2" else ti[:-2]
        calls = [float(t[0])]
        for j in range(1, n):
            calls += [mid[j - 1], float(t[j])]
        e["timesteps"] = calls
    m = max(e["sigmas"])
    e["init_noise_sigma"] = float(np.float32(m)) if spacing in ("linspace", "trailing") else \
        float(np.sqrt(np.float32(np.float32(m) * np.float32(m) + np.float32(1))))
    return e


def main():
    out = {"note": "generated by scripts/make-karras-fixtures.py (numpy %s)" % np.__version__, "schedules": []}
    for sampler in ("heun", "lms", "dpm2", "dpm2_a", "unipc"):
        for spacing in (("linspace",) if sampler == "unipc" else ("linspace", "leading", "trailing")):
            for n in (1, 2, 4, 20, 25):
                e = schedule(sampler, spacing, n)
                if e is not None:
                    out["schedules"].append(e)
    path = os.path.join(HERE, "..", "tests", "fixtures", "sched", "karras_ref.json")

    def enc(o):
        if isinstance(o, float) and o != o:
            return "null"   # NaN (unused list ends of the KDPM2 classes)
        if isinstance(o, float):
            return str(np.float32(o)) if np.float32(o) == o else repr(o)
        if isinstance(o, list):
            return "[" + ",".join(enc(v) for v in o) + "]"
        if isinstance(o, dict):
            return "{" + ",".join(json.dumps(k) + ":" + enc(v) for k, v in o.items()) + "}"
        return json.dumps(o)
    with open(path, "w") as fh:
        fh.write(enc(out) + "\n")
    print("wrote", path, len(out["schedules"]), "schedules")


if __name__ == "__main__":
    main()
