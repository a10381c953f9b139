#!/usr/bin/python3
"""a1111_client.py — a client of the AUTOMATIC1111 web API and OpenAI's images API, written from their
documentation (A1111 modules/api/api.py + models.py: field names, defaults, response shapes; OpenAI
POST /v1/images/generations), with nothing but the Python standard library (urllib, socket). It drives
`sdgen serve` in the tests (tests/test_serve*.sh) and compares with the `sdgen` command.

    a1111_client.py functional URL SDGEN MODEL TMP      API shapes, CLI-identical PNGs, errors
    a1111_client.py tiny URL SDGEN MODEL VOCAB TMP      CLI-identical PNGs with the golden tiny model
    a1111_client.py load URL PID TMP                    50 requests from 10 clients, queue bound, RSS
    a1111_client.py interrupt URL LOG                   interrupt a 50-step job: stops within one step
    a1111_client.py dropped URL LOG                     a client that leaves while queued is dropped
    a1111_client.py hostile URL TMP                     hostile inputs: each a clear 4xx, server still serving
    a1111_client.py slow URL                            slowloris and idle clients (server with --timeout 1)
    a1111_client.py save URL SAVEDIR                    save_images with a path-like prompt stays in SAVEDIR

Prints "ok   ..." / "FAIL ..." lines; exits 1 when something failed. Every request has a time-out.
"""
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

PASS = 0
FAIL = 0


def ok(msg):
    global PASS
    PASS += 1
    print("ok   " + msg, flush=True)


def bad(msg):
    global FAIL
    FAIL += 1
    print("FAIL " + msg, file=sys.stderr, flush=True)


def check(msg, got, want):
    if got == want:
        ok(msg)
    else:
        bad("%s: got %r want %r" % (msg, got, want))


class Api:
    """The A1111 API as its documentation describes it: JSON in, JSON out, HTTP Basic auth optional."""

    def __init__(self, url, auth=None, timeout=300):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if auth:
            self.headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()

    def call(self, method, path, body=None, raw=None, headers=None):
        """(status, headers, parsed JSON or None, raw bytes)"""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = dict(self.headers)
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                status, hdrs, payload = r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, payload = e.code, dict(e.headers), e.read()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = None
        return status, hdrs, parsed, payload

    def get(self, path):
        return self.call("GET", path)

    def post(self, path, body=None, raw=None, headers=None):
        return self.call("POST", path, body, raw, headers)

    def txt2img(self, **fields):
        return self.post("/sdapi/v1/txt2img", fields)


def b64png(s):
    return base64.b64decode(s)


def cli_png(sdgen, model, out, prompt, seed, w, h, steps, cfg, sampler, extra=()):
    cmd = [sdgen, "-m", model, "-p", prompt, "--seed", str(seed), "-W", str(w), "-H", str(h), "--steps", str(steps),
           "--cfg-scale", str(cfg), "--sampler", sampler, "-o", out, "-q", "--overwrite"] + list(extra)
    r = subprocess.run(cmd, capture_output=True, timeout=600)
    if r.returncode != 0:
        bad("CLI %s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr.decode(errors="replace")[-300:]))
        return b""
    with open(out, "rb") as f:
        return f.read()


def a1111_error_shape(msg, status, js, want_status, want_in_detail):
    if status != want_status:
        bad("%s: status %d, want %d (%r)" % (msg, status, want_status, js))
        return
    if not isinstance(js, dict) or set(js) != {"error", "detail", "body", "errors"}:
        bad("%s: not A1111's error shape: %r" % (msg, js))
        return
    if want_in_detail.lower() not in str(js["detail"]).lower():
        bad("%s: detail %r does not mention %r" % (msg, js["detail"], want_in_detail))
        return
    ok("%s: %d %s" % (msg, status, js["detail"]))


# ------------------------------------------------------------------ functional
def functional(url, sdgen, model, tmp):
    api = Api(url)
    prompt = "a large red circle on the left, blue background"

    # samplers: every name and alias is one the CLI accepts, and every CLI sampler is listed
    st, _, samplers, _ = api.get("/sdapi/v1/samplers")
    check("GET samplers: 200", st, 200)
    names = [s["name"] for s in samplers]
    check("samplers: A1111 SamplerItem fields", all(set(s) == {"name", "aliases", "options"} for s in samplers), True)
    accepted = []
    for n in names + [a for s in samplers for a in s["aliases"]]:
        r = subprocess.run([sdgen, "--sampler", n, "--help"], capture_output=True, timeout=60)
        accepted.append((n, r.returncode))
    check("samplers: the CLI accepts every name and alias", [n for n, rc in accepted if rc != 0], [])
    help_text = subprocess.run([sdgen, "--help"], capture_output=True, timeout=60).stdout.decode()
    line = [l for l in help_text.splitlines() if "--sampler NAME" in l][0]
    cli_names = sorted(x.strip() for x in line.split("--sampler NAME", 1)[1].split("(")[0].split("|"))
    check("samplers: the CLI's samplers are the aliases", sorted(a for s in samplers for a in s["aliases"]), cli_names)
    check("samplers: A1111 display names", sorted(names), sorted(["DDIM", "DDPM", "Euler", "Euler a", "DPM++ 2M", "DPM++ 2M SDE",
                                                                 "LCM", "UniPC", "Heun", "LMS", "DPM2", "DPM2 a"]))

    st, _, scheds, _ = api.get("/sdapi/v1/schedulers")
    check("schedulers: Automatic and Karras", [(s["name"], s["label"]) for s in scheds],
          [("automatic", "Automatic"), ("karras", "Karras")])

    st, _, models, _ = api.get("/sdapi/v1/sd-models")
    check("sd-models: one model", len(models), 1)
    m = models[0]
    check("sd-models: title is 'file [hash]'", m["title"], "%s [%s]" % (os.path.basename(model), m["hash"]))
    check("sd-models: hash = first 10 hex digits of sha256", m["hash"], (m["sha256"] or "")[:10])
    st, _, opts, _ = api.get("/sdapi/v1/options")
    check("options: sd_model_checkpoint is the title", opts.get("sd_model_checkpoint"), m["title"])
    st, _, _, raw = api.post("/sdapi/v1/options", {"sd_model_checkpoint": m["title"], "unknown_setting": 1})
    check("POST options with the loaded model: 200 null", (st, raw), (200, b"null"))
    st, _, js, _ = api.post("/sdapi/v1/options", {"sd_model_checkpoint": "v1-5-pruned.safetensors"})
    a1111_error_shape("POST options with another model", st, js, 422, "not found")

    st, _, prog, _ = api.get("/sdapi/v1/progress?skip_current_image=true")
    check("progress when idle: 0 and no job", (prog["progress"], prog["eta_relative"], prog["state"]["job_count"]),
          (0, 0, 0))
    check("progress: A1111 state keys", sorted(k for k in prog["state"] if k != "queued"),
          sorted(["skipped", "interrupted", "stopping_generation", "job", "job_count", "job_timestamp", "job_no",
                  "sampling_step", "sampling_steps"]))

    # txt2img, 2 images: PNG bytes equal the CLI's for seeds S and S+1; info parses; seeds match
    seed = 1234
    st, _, r, _ = api.txt2img(prompt=prompt, negative_prompt="green", seed=seed, steps=6, cfg_scale=7.5, width=64,
                              height=64, sampler_name="Euler a", batch_size=2, n_iter=1, send_images=True,
                              save_images=False, unknown_field={"is": ["ignored"]})
    check("txt2img batch_size 2: 200", st, 200)
    check("txt2img: A1111 TextToImageResponse keys", sorted(r), ["images", "info", "parameters"])
    info = json.loads(r["info"])
    check("info: seed", info["seed"], seed)
    check("info: all_seeds", info["all_seeds"], [seed, seed + 1])
    check("info: prompt / all_prompts", (info["prompt"], info["all_prompts"]), (prompt, [prompt, prompt]))
    check("info: sampler_name, steps, cfg_scale, size", (info["sampler_name"], info["steps"], info["cfg_scale"],
          info["width"], info["height"]), ("Euler a", 6, 7.5, 64, 64))
    check("info: two infotexts with their seeds", [("Seed: %d," % (seed + i)) in t for i, t in
                                                    enumerate(info["infotexts"])], [True, True])
    check("parameters: the request echoed with defaults", (r["parameters"]["seed"], r["parameters"]["n_iter"],
          r["parameters"]["scheduler"], r["parameters"]["sampler_name"]), (seed, 1, "Automatic", "Euler a"))
    for i in range(2):
        want = cli_png(sdgen, model, os.path.join(tmp, "cli-%d.png" % i), prompt, seed + i, 64, 64, 6, 7.5, "euler_a",
                       ["-n", "green"])
        got = b64png(r["images"][i])
        if got == want and want:
            ok("txt2img image %d: PNG bytes equal the CLI's (seed %d, %d bytes)" % (i, seed + i, len(got)))
        else:
            bad("txt2img image %d: PNG differs from the CLI's (%d vs %d bytes)" % (i, len(got), len(want)))
    with open(os.path.join(tmp, "server-0.png"), "wb") as f:
        f.write(b64png(r["images"][0]))

    # the request webuiapi (the A1111 Python client) sends for api.txt2img(prompt=..., seed=..., ...): every field
    # with its defaults (webuiapi.py WebUIApi.txt2img), hires fix off, eta 1.0, hr_* fields present
    webuiapi_payload = {"enable_hr": False, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 0,
                        "hr_resize_x": 0, "hr_resize_y": 0, "denoising_strength": 0.7, "firstphase_width": 0,
                        "firstphase_height": 0, "prompt": prompt, "styles": [], "seed": 77, "subseed": -1,
                        "subseed_strength": 0.0, "seed_resize_from_h": 0, "seed_resize_from_w": 0, "batch_size": 1,
                        "n_iter": 1, "steps": 5, "cfg_scale": 7.0, "width": 64, "height": 64, "restore_faces": False,
                        "tiling": False, "do_not_save_samples": False, "do_not_save_grid": False,
                        "negative_prompt": "", "eta": 1.0, "s_churn": 0, "s_tmax": 0, "s_tmin": 0, "s_noise": 1,
                        "override_settings": {}, "override_settings_restore_afterwards": True,
                        "sampler_name": "Euler a", "sampler_index": "Euler a", "script_name": None, "script_args": [],
                        "send_images": True, "save_images": False, "alwayson_scripts": {}}
    st, _, rw, _ = api.post("/sdapi/v1/txt2img", webuiapi_payload)
    want = cli_png(sdgen, model, os.path.join(tmp, "cli-w.png"), prompt, 77, 64, 64, 5, 7, "euler_a")
    check("webuiapi's full txt2img payload: 200 and the CLI's bytes", (st, st == 200 and b64png(rw["images"][0]) == want),
          (200, True))
    st, _, sc, _ = api.get("/sdapi/v1/scripts")
    check("GET scripts (webuiapi asks at start-up): 200, no scripts", (st, sc), (200, {"txt2img": [], "img2img": []}))

    # png-info round trip
    st, _, pi, _ = api.post("/sdapi/v1/png-info", {"image": r["images"][0]})
    check("png-info: 200", st, 200)
    check("png-info: info = the image's infotext", pi["info"], info["infotexts"][0])
    p = pi["parameters"]
    check("png-info: parsed fields", (p.get("Prompt"), p.get("Negative prompt"), p.get("Seed"), p.get("Steps"),
          p.get("Sampler"), p.get("Size-1"), p.get("Size-2"), p.get("Model hash")),
          (prompt, "green", str(seed), "6", "Euler a", "64", "64", m["hash"]))
    st, _, pi2, _ = api.post("/sdapi/v1/png-info", {"image": "data:image/png;base64," + r["images"][1]})
    check("png-info: data URL accepted", (st, pi2["info"] == info["infotexts"][1]), (200, True))

    # Karras schedule by A1111's pre-1.9 name, and clip skip through override_settings
    st, _, r2, _ = api.txt2img(prompt=prompt, seed=5, steps=5, cfg_scale=6, width=64, height=64,
                               sampler_name="DPM++ 2M Karras", override_settings={"CLIP_stop_at_last_layers": 2})
    want = cli_png(sdgen, model, os.path.join(tmp, "cli-k.png"), prompt, 5, 64, 64, 5, 6, "dpmpp_2m",
                   ["--schedule", "karras", "--clip-skip", "2"])
    check("txt2img DPM++ 2M Karras + clip skip 2: 200 and the CLI's bytes", (st, b64png(r2["images"][0]) == want),
          (200, True))
    check("infotext says Karras and Clip skip 2", ("Schedule type: Karras" in json.loads(r2["info"])["infotexts"][0],
          "Clip skip: 2" in json.loads(r2["info"])["infotexts"][0]), (True, True))

    # eta: DDIM's eta as the CLI's --eta (variance noise drawn), echoed; it changes the image
    st, _, re, _ = api.txt2img(prompt=prompt, seed=8, steps=4, cfg_scale=7, width=64, height=64, sampler_name="DDIM",
                               eta=0.5)
    want = cli_png(sdgen, model, os.path.join(tmp, "cli-eta.png"), prompt, 8, 64, 64, 4, 7, "ddim", ["--eta", "0.5"])
    want0 = cli_png(sdgen, model, os.path.join(tmp, "cli-eta0.png"), prompt, 8, 64, 64, 4, 7, "ddim")
    check("txt2img DDIM eta 0.5: 200, the CLI's --eta 0.5 bytes, not eta 0's, echoed, Eta DDIM in the infotext",
          (st, b64png(re["images"][0]) == want, want != want0, re["parameters"]["eta"],
           "Eta DDIM: 0.5" in json.loads(re["info"])["infotexts"][0]), (200, True, True, 0.5, True))
    st, _, re, _ = api.txt2img(prompt=prompt, seed=8, steps=4, cfg_scale=7, width=64, height=64, sampler_name="DDIM",
                               eta=2)
    check("txt2img eta 2: 422 naming eta", (st, '"eta"' in re.get("detail", "")), (422, True))

    # defaults: A1111's steps 50 / sampler Euler / cfg 7 are echoed; seed -1 draws one that info reports
    st, _, r3, _ = api.txt2img(prompt=prompt, steps=3)
    i3 = json.loads(r3["info"])
    check("defaults: seed -1 echoed, a drawn seed in info below 2^32", (r3["parameters"]["seed"],
          0 <= i3["seed"] < 2 ** 32, i3["all_seeds"] == [i3["seed"]]), (-1, True, True))
    check("defaults: Euler, cfg 7, the model's 64x64", (i3["sampler_name"], i3["cfg_scale"], i3["width"],
          i3["height"]), ("Euler", 7, 64, 64))
    st, _, r4, _ = api.txt2img(prompt=prompt, steps=3, send_images=False)
    check("send_images false: no images, info still there", (st, r4["images"], "infotexts" in r4["info"]),
          (200, [], True))

    # img2img: init image as base64, with and without a data URL prefix; equal to `sdgen -i`
    init = os.path.join(tmp, "server-0.png")
    with open(init, "rb") as f:
        init_b64 = base64.b64encode(f.read()).decode()
    want = cli_png(sdgen, model, os.path.join(tmp, "cli-i2i.png"), "a small yellow star", 7, 64, 64, 8, 7.5, "ddim",
                   ["-i", init, "--strength", "0.5"])
    for prefix in ("", "data:image/png;base64,"):
        st, _, ri, _ = api.post("/sdapi/v1/img2img", {"prompt": "a small yellow star", "init_images": [prefix + init_b64],
                                                      "denoising_strength": 0.5, "seed": 7, "steps": 8,
                                                      "cfg_scale": 7.5, "sampler_name": "DDIM", "width": 64,
                                                      "height": 64})
        check("img2img%s: 200 and the CLI's bytes" % (" (data URL)" if prefix else ""),
              (st, st == 200 and b64png(ri["images"][0]) == want), (200, True))
    check("img2img: init image not echoed (include_init_images false)", ri["parameters"]["init_images"], None)
    check("img2img: infotext has Denoising strength", "Denoising strength: 0.5" in json.loads(ri["info"])["infotexts"][0],
          True)

    # OpenAI images API
    st, _, oa, _ = api.post("/v1/images/generations", {"prompt": prompt, "n": 2, "size": "64x64",
                                                       "response_format": "b64_json", "model": "dall-e-2",
                                                       "seed": 99, "steps": 6, "sampler": "ddim", "cfg_scale": 7.5,
                                                       "negative_prompt": "green"})
    check("OpenAI: 200 with created and 2 data items", (st, isinstance(oa.get("created"), int), len(oa["data"])),
          (200, True, 2))
    for i in range(2):
        want = cli_png(sdgen, model, os.path.join(tmp, "cli-oa%d.png" % i), prompt, 99 + i, 64, 64, 6, 7.5, "ddim",
                       ["-n", "green"])
        check("OpenAI image %d: the CLI's bytes" % i, base64.b64decode(oa["data"][i]["b64_json"]) == want, True)
    st, _, oe, _ = api.post("/v1/images/generations", {"n": 1})
    check("OpenAI without prompt: 400 in OpenAI's error shape", (st, sorted(oe["error"])),
          (400, ["code", "message", "param", "type"]))

    # errors
    st, _, js, _ = api.txt2img(prompt="x", steps=0)
    a1111_error_shape("steps 0", st, js, 422, "steps")
    st, _, js, _ = api.txt2img(prompt="x", width=65)
    a1111_error_shape("width 65", st, js, 422, "multiple of 8")
    st, _, js, _ = api.txt2img(prompt="x", sampler_name="DPM++ 3M SDE")
    a1111_error_shape("unknown sampler", st, js, 422, "Sampler not found")
    st, _, js, _ = api.post("/sdapi/v1/txt2img", raw=b'{"prompt": "x",')
    a1111_error_shape("malformed JSON", st, js, 400, "not valid JSON")
    st, _, js, _ = api.txt2img(prompt="x", enable_hr=True)
    a1111_error_shape("enable_hr true", st, js, 422, "hires fix")
    st, _, js, _ = api.txt2img(prompt="x", steps=3, batch_size=17)
    a1111_error_shape("17 images", st, js, 422, "at most 16")
    st, _, js, _ = api.get("/sdapi/v1/nothing")
    a1111_error_shape("unknown path", st, js, 404, "Not Found")
    st, h, js, _ = api.get("/sdapi/v1/txt2img")
    a1111_error_shape("GET on a POST endpoint", st, js, 405, "Method Not Allowed")
    check("405 names the allowed method", h.get("Allow"), "POST")


# ------------------------------------------------------------------ tiny golden model
def tiny(url, sdgen, model, vocab, tmp):
    api = Api(url)
    prompt = "a photo of a cat"
    st, _, r, _ = api.txt2img(prompt=prompt, negative_prompt="dog", seed=500, steps=3, cfg_scale=7.5, width=64,
                              height=64, sampler_name="Euler a")
    want = cli_png(sdgen, model, os.path.join(tmp, "tiny-cli.png"), prompt, 500, 64, 64, 3, 7.5, "euler_a",
                   ["--vocab", vocab, "-n", "dog"])
    check("tiny model txt2img: 200 and the CLI's bytes", (st, st == 200 and b64png(r["images"][0]) == want),
          (200, True))
    st, _, r, _ = api.txt2img(prompt=prompt, seed=501, steps=4, cfg_scale=5, width=64, height=64, sampler_name="DDIM",
                              override_settings={"randn_source": "GPU"})
    want = cli_png(sdgen, model, os.path.join(tmp, "tiny-cli2.png"), prompt, 501, 64, 64, 4, 5, "ddim",
                   ["--vocab", vocab, "--rng", "cuda"])
    check("tiny model, randn_source GPU = --rng cuda: the CLI's bytes", (st, st == 200 and b64png(r["images"][0]) == want),
          (200, True))


# ------------------------------------------------------------------ load
def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_idle(api, limit=300):
    t0 = time.time()
    while time.time() - t0 < limit:
        st, _, p, _ = api.get("/sdapi/v1/progress")
        if st == 200 and p["state"]["job_count"] == 0 and p["state"]["queued"] == 0:
            return True
        time.sleep(0.1)
    return False


def load(url, pid, tmp):
    api = Api(url, timeout=300)
    body = {"prompt": "a small blue square", "steps": 4, "width": 64, "height": 64, "sampler_name": "Euler a"}
    st, _, _, _ = api.txt2img(**body)
    check("warm-up request: 200", st, 200)
    wait_idle(api)
    idle = rss_kb(pid)
    results = []
    lock = threading.Lock()
    start = threading.Barrier(10)

    def client(k):
        c = Api(url, timeout=300)
        start.wait()
        for i in range(5):
            try:
                s, h, js, _ = c.txt2img(seed=k * 100 + i, **body)
                ra = h.get("Retry-After")
                good = (s == 200 and len(js["images"]) == 1) or (s == 503 and ra is not None and int(ra) >= 1 and
                                                                 "queue is full" in js["detail"])
            except Exception as e:  # a time-out or a reset counts as a failure
                s, good = repr(e), False
            with lock:
                results.append((s, good))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(10)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    hung = sum(t.is_alive() for t in threads)
    check("load: no client hangs", hung, 0)
    check("load: 50 answers", len(results), 50)
    codes = [s for s, _ in results]
    check("load: every answer is 200 (one image) or 503 (queue full, Retry-After)", [r for r in results if not r[1]],
          [])
    n200, n503 = codes.count(200), codes.count(503)
    if n200 >= 5 and n503 >= 1:
        ok("load: %d x 200, %d x 503 in %.1f s (queue 4 bounds the waiting)" % (n200, n503, time.time() - t0))
    else:
        bad("load: %d x 200, %d x 503: want at least 5 served and some refused" % (n200, n503))
    check("load: server idle again", wait_idle(api), True)
    st, _, _, _ = api.get("/sdapi/v1/samplers")
    check("load: still serving", st, 200)
    after = rss_kb(pid)
    # the job's images, base64 and JSON are freed and trimmed (malloc_trim) once the queue is empty
    limit = idle + max(32 * 1024, idle // 4)
    if after <= limit:
        ok("load: resident memory back near idle (%d KB idle, %d KB after)" % (idle, after))
    else:
        bad("load: resident memory %d KB after, %d KB idle (limit %d)" % (after, idle, limit))


# ------------------------------------------------------------------ interrupt
def interrupt(url, log):
    api = Api(url, timeout=600)
    box = {}

    def run():
        box["r"] = api.txt2img(prompt="a large green heart", seed=3, steps=50, width=128, height=128,
                               sampler_name="Euler")

    t = threading.Thread(target=run)
    t.start()
    t0 = time.time()
    step = 0
    while time.time() - t0 < 300:
        st, _, p, _ = api.get("/sdapi/v1/progress")
        step = p["state"]["sampling_step"]
        if p["state"]["job"] == "txt2img" and p["state"]["sampling_steps"] == 50 and step >= 3:
            break
        time.sleep(0.02)
    check("interrupt: the 50-step job is running (progress %.2f, step %d)" % (p["progress"], step), step >= 3, True)
    check("interrupt: progress reports the job", (p["state"]["job"], p["state"]["sampling_steps"]), ("txt2img", 50))
    st, _, js, raw = api.post("/sdapi/v1/interrupt")
    check("interrupt: 200 {}", (st, js), (200, {}))
    t.join(300)
    check("interrupt: the request returns", t.is_alive(), False)
    st, _, r, _ = box.get("r", (0, None, None, None))
    check("interrupt: the job answers 200 with no finished image", (st, r and r["images"]), (200, []))
    with open(log) as f:
        text = f.read()
    import re
    a = re.search(r"job (\d+): interrupt at step (\d+) of 50", text)
    b = re.search(r"job (\d+): interrupted after step (\d+) of 50", text)
    if a and b:
        s_at, s_end = int(a.group(2)), int(b.group(2))
        if 0 <= s_end - s_at <= 1 and s_end < 50:
            ok("interrupt: asked at step %d, stopped after step %d of 50 (within one step)" % (s_at, s_end))
        else:
            bad("interrupt: asked at step %d, stopped after step %d of 50" % (s_at, s_end))
    else:
        bad("interrupt: the log lacks the interrupt lines")
    st, _, p, _ = api.get("/sdapi/v1/progress")
    check("interrupt: idle afterwards", p["state"]["job_count"], 0)


# ------------------------------------------------------------------ a client that leaves while queued
def dropped(url, log):
    api = Api(url, timeout=600)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", api.txt2img(prompt="a red star", seed=1, steps=40,
                                                                         width=128, height=128)))
    t.start()
    t0 = time.time()
    while time.time() - t0 < 300:
        st, _, p, _ = api.get("/sdapi/v1/progress")
        if p["state"]["job"] == "txt2img" and p["state"]["sampling_step"] >= 1:
            break
        time.sleep(0.02)
    u = urllib.parse.urlparse(url)
    body = json.dumps({"prompt": "never generated", "seed": 77, "steps": 2}).encode()
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    s.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    t1 = time.time()
    while time.time() - t1 < 60:
        st, _, p, _ = api.get("/sdapi/v1/progress")
        if p["state"]["queued"] == 1:
            break
        time.sleep(0.02)
    check("dropped: the second request is queued", p["state"]["queued"], 1)
    s.close()
    t1 = time.time()
    while time.time() - t1 < 60:
        st, _, p, _ = api.get("/sdapi/v1/progress")
        if p["state"]["queued"] == 0:
            break
        time.sleep(0.05)
    check("dropped: it left the queue while the first job still runs", (p["state"]["queued"], p["state"]["job_count"]),
          (0, 1))
    t.join(600)
    check("dropped: the first job finishes normally", box.get("r", (0,))[0], 200)
    wait_idle(api)
    with open(log) as f:
        text = f.read()
    check("dropped: logged as dropped from the queue", "left while queued: dropped from the queue" in text, True)
    check("dropped: its seed never ran (no image with seed 77)", "Seed: 77," in text, False)


# ------------------------------------------------------------------ hostile input
def raw_request(url, data, timeout=30, read_until_close=True):
    u = urllib.parse.urlparse(url)
    s = socket.create_connection((u.hostname, u.port), timeout=timeout)
    try:
        s.sendall(data)
    except OSError:
        pass
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
            if not read_until_close and b"\r\n\r\n" in out:
                break
    except OSError:
        pass
    s.close()
    return out


def status_of(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def hostile(url, tmp):
    api = Api(url, timeout=120)

    def serving(what):
        st, _, _, _ = api.get("/sdapi/v1/samplers")
        check("%s: server still serving" % what, st, 200)

    cases = [
        ("malformed JSON", b'{"prompt": "a", "steps": }', 400, "not valid JSON"),
        ("not an object", b'["prompt"]', 422, "JSON object"),
        ("deeply nested JSON (100000 levels)", b'{"prompt":' + b"[" * 100000 + b"]" * 100000 + b"}", 400, "nested"),
        ("NUL escape in a string", b'{"prompt": "a\\u0000b"}', 400, "\\u0000"),
        ("lone UTF-16 surrogate", b'{"prompt": "\\ud800"}', 400, "not valid JSON"),
        ("non-UTF-8 prompt", b'{"prompt": "caf\xe9 \xff\xfe"}', 422, "not valid UTF-8"),
        ("non-UTF-8 negative prompt", b'{"prompt": "ok", "negative_prompt": "\xc0\xaf"}', 422, "not valid UTF-8"),
        ("huge width", b'{"prompt": "a", "width": 100000}', 422, "width"),
        ("huge width and height within the table", b'{"prompt": "a", "width": 65536, "height": 65536}', 422,
         "at most 8192"),
        ("negative width", b'{"prompt": "a", "width": -64}', 422, "width"),
        ("seed -2", b'{"prompt": "a", "seed": -2}', 422, "seed"),
        ("seed -1e30", b'{"prompt": "a", "seed": -1e30}', 422, "seed"),
        ("seed 1e30", b'{"prompt": "a", "seed": 1e30}', 422, "seed"),
        ("seed 2^64 as a string", b'{"prompt": "a", "seed": "18446744073709551616"}', 422, "seed"),
        ("seed 1.5", b'{"prompt": "a", "seed": 1.5}', 422, "seed"),
        ("steps 1e9", b'{"prompt": "a", "steps": 1e9}', 422, "steps"),
        ("steps a string of letters", b'{"prompt": "a", "steps": "many"}', 422, "steps"),
        ("cfg_scale 1e308", b'{"prompt": "a", "cfg_scale": 1e308}', 422, "cfg_scale"),
        ("batch_size 100000", b'{"prompt": "a", "batch_size": 100000}', 422, "images"),
        ("n_iter 0", b'{"prompt": "a", "n_iter": 0}', 422, "n_iter"),
        ("prompt of 70000 bytes", b'{"prompt": "' + b"a" * 70000 + b'"}', 422, "bytes long"),
        ("prompt of the wrong type", b'{"prompt": {"x": 1}}', 422, "string"),
        ("path-like prompt with save_images on", b'{"prompt": "../../../../etc/passwd", "save_images": true}', 422,
         "save_images"),
        ("override_settings not an object", b'{"prompt": "a", "override_settings": [1]}', 422, "override_settings"),
    ]
    for name, body, want, needle in cases:
        st, _, js, raw = api.post("/sdapi/v1/txt2img", raw=body)
        if st == want and isinstance(js, dict) and needle.lower() in str(js.get("detail", "")).lower():
            ok("%s: %d %s" % (name, st, js["detail"][:100]))
        else:
            bad("%s: %d %r, want %d mentioning %r" % (name, st, raw[:200], want, needle))
    serving("after the bad bodies")

    img_cases = [
        ("invalid base64", {"prompt": "a", "init_images": ["iVBORw0KGgo!!!!"]}, "invalid base64"),
        ("base64 of a non-image", {"prompt": "a", "init_images": [base64.b64encode(b"hello world" * 10).decode()]},
         "not a PNG or JPEG"),
        ("truncated base64 (13 digits)", {"prompt": "a", "init_images": ["iVBORw0KGgoAA"]}, "invalid base64"),
        ("a truncated PNG", {"prompt": "a", "init_images": ["iVBORw0KGgoAAAANSUhEUgAAAEAAAABA"]}, "init_images[0]"),
        ("no init image", {"prompt": "a", "init_images": []}, "exactly one"),
        ("two init images", {"prompt": "a", "init_images": ["aaaa", "bbbb"]}, "exactly one"),
        ("a mask (inpainting)", {"prompt": "a", "init_images": ["aaaa"], "mask": "aaaa"}, "inpainting"),
    ]
    for name, body, needle in img_cases:
        st, _, js, raw = api.post("/sdapi/v1/img2img", body)
        if st == 422 and needle.lower() in str(js.get("detail", "")).lower():
            ok("img2img %s: 422 %s" % (name, js["detail"][:100]))
        else:
            bad("img2img %s: %d %r" % (name, st, raw[:200]))
    st, _, js, raw = api.post("/sdapi/v1/png-info", {"image": "####"})
    check("png-info with invalid base64: 422", (st, "invalid base64" in str(js.get("detail"))), (422, True))
    serving("after the bad images")

    # a 100 MB body is refused from its Content-Length, before it is read (the answer comes after the headers)
    u = urllib.parse.urlparse(url)
    resp = raw_request(url, b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 100000000\r\n\r\n", read_until_close=False)
    check("100 MB body (Content-Length): 413 naming the limit", (status_of(resp), b"at most 67108864" in resp or
                                                                 b"Content-Length: " in resp), (413, True))
    # bodies being received are bounded together (2 x --max-body): two 60 MB uploads in progress, a third is 503
    hold = []
    for _ in range(2):
        k = socket.create_connection((u.hostname, u.port), timeout=30)
        k.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 60000000\r\n\r\n{")
        hold.append(k)
    time.sleep(0.3)
    resp = raw_request(url, b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 60000000\r\n\r\n",
                       read_until_close=False)
    check("a third 60 MB upload while two are in progress: 503 busy", (status_of(resp), b"busy receiving" in resp),
          (503, True))
    for k in hold:
        k.close()
    time.sleep(0.3)
    st, _, js, _ = api.txt2img(prompt="after the uploads", steps=1)
    check("the budget comes back when they go: 200", st, 200)
    # the same size chunked (no Content-Length): read, dropped, 413
    s = socket.create_connection((u.hostname, u.port), timeout=120)
    s.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % (1 << 20) + b"y" * (1 << 20) + b"\r\n"
    try:
        for _ in range(100):
            s.sendall(chunk)
        s.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    resp = b""
    try:
        while b"\r\n\r\n" not in resp:
            d = s.recv(65536)
            if not d:
                break
            resp += d
    except OSError:
        pass
    s.close()
    check("100 MB chunked body: 413", status_of(resp), 413)
    serving("after the 100 MB bodies")

    # 10,000 headers: libmicrohttpd's header memory (431); 200 small ones: sdgen's count (431, JSON)
    many = b"".join(b"X-Header-%d: v\r\n" % i for i in range(10000))
    resp = raw_request(url, b"GET /sdapi/v1/samplers HTTP/1.1\r\nHost: 127.0.0.1\r\n" + many + b"\r\n")
    check("10,000 headers: 431", status_of(resp), 431)
    some = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    resp = raw_request(url, b"GET /sdapi/v1/samplers HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + some +
                       b"\r\n")
    check("200 headers: 431 with A1111's error JSON", (status_of(resp), b'"detail":"201 header fields' in resp or
                                                       b'"detail":"202 header fields' in resp), (431, True))
    resp = raw_request(url, b"GET /sdapi/v1/samplers HTTP/1.1\r\n\r\n")
    check("HTTP/1.1 without Host: 400", status_of(resp), 400)
    resp = raw_request(url, b"GET /sdapi/v1/samplers HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n")
    check("a header line without ':': 400", status_of(resp), 400)
    resp = raw_request(url, b"GARBAGE\r\n\r\n")
    check("a request line that is not HTTP: closed without an answer", resp, b"")
    resp = raw_request(url, b"GET /sdapi/v1/samplers HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    check("a Host that is not localhost (DNS rebinding): 403", status_of(resp), 403)
    resp = raw_request(url, b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n"
                            b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"prompt\":1}")
    check("a cross-origin POST from a web page: 403", status_of(resp), 403)
    serving("after the bad headers")



def slow(url):
    """Slow clients, against a server with --timeout 1."""
    api = Api(url, timeout=120)
    u = urllib.parse.urlparse(url)

    def serving(what):
        st, _, _, _ = api.get("/sdapi/v1/samplers")
        check("%s: server still serving" % what, st, 200)

    # slowloris: headers trickled one line every 0.5 s; the server answers 408 and closes, and serves others
    # meanwhile
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    s.sendall(b"GET /sdapi/v1/samplers HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    t0 = time.time()
    resp = b""
    served_meanwhile = None
    for i in range(60):
        try:
            s.sendall(b"X-Slow-%d: z\r\n" % i)
        except OSError:
            break
        if i == 1:
            st, _, _, _ = api.get("/sdapi/v1/samplers")
            served_meanwhile = st
        s.settimeout(0.5)
        try:
            d = s.recv(4096)
            resp += d
            if not d or b"\r\n\r\n" in resp:
                break
        except socket.timeout:
            pass
    elapsed = time.time() - t0
    s.close()
    check("slowloris: others served meanwhile", served_meanwhile, 200)
    if status_of(resp) == 408 and elapsed < 20:
        ok("slowloris: 408 and closed after %.1f s (--timeout 1)" % elapsed)
    else:
        bad("slowloris: %r after %.1f s" % (resp[:80], elapsed))
    # an idle connection is closed without a word
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    t0 = time.time()
    d = s.recv(100)
    check("idle connection closed after the time-out", (d, time.time() - t0 < 20), (b"", True))
    s.close()
    serving("after the slow clients")


def save(url, savedir):
    api = Api(url)
    parent = os.path.dirname(os.path.abspath(savedir))
    before = set(os.listdir(parent))
    st, _, r, _ = api.txt2img(prompt="../../../x/../../etc/passwd", seed=9, steps=2, save_images=True)
    check("save_images with a path-like prompt: 200", st, 200)
    files = os.listdir(savedir)
    check("save_images: one file, in the save folder", len(files), 1)
    if files:
        name = files[0]
        check("save_images: the name holds no separator and no leading dot",
              ("/" not in name, name.startswith("."), name.endswith(".png"), "-9-" in name), (True, False, True, True))
        with open(os.path.join(savedir, name), "rb") as f:
            check("save_images: the file is the image sent", f.read() == b64png(r["images"][0]), True)
    check("save_images: nothing new beside the save folder", sorted(set(os.listdir(parent)) - before), [])


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "functional":
        functional(*args)
    elif mode == "tiny":
        tiny(*args)
    elif mode == "load":
        load(args[0], int(args[1]), args[2])
    elif mode == "interrupt":
        interrupt(*args)
    elif mode == "dropped":
        dropped(*args)
    elif mode == "hostile":
        hostile(*args)
    elif mode == "slow":
        slow(*args)
    elif mode == "save":
        save(*args)
    else:
        print("unknown mode " + mode, file=sys.stderr)
        sys.exit(2)
    print("%d passed, %d failed" % (PASS, FAIL))
    sys.exit(1 if FAIL else 0)


if __name__ == "__main__":
    main()
