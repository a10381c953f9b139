/* serve.h — `sdgen serve`: an HTTP server that keeps one model loaded and speaks the AUTOMATIC1111 web API
 * (/sdapi/v1/...) and OpenAI's POST /v1/images/generations (docs/SERVER.md).
 *
 * The files of the server:
 *   cmd_serve.c      the command: options, model load, the listening socket, signals, shutdown
 *   serve_http.c     HTTP through libmicrohttpd: limits, authentication, CORS, routing, logging, time-outs
 *   serve_request.c  JSON request bodies -> a validated job (no HTTP, no model: fuzzed by tests/fuzz/fuzz_serve.c),
 *                    base64, the A1111/OpenAI response bodies
 *   serve_worker.c   the bounded FIFO queue and the one worker thread that runs the pipeline
 *
 * Threads: libmicrohttpd runs one thread per connection; a request that generates waits in its own
 * connection thread for the worker. Everything shared between them lives in sv_server under `mu`.
 */
#ifndef SDGEN_SERVE_H
#define SDGEN_SERVE_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "sdgen/common.h"
#include "sdgen/pipeline.h"

/* ---- limits (docs/SERVER.md "Limits") ---- */

/* JSON nesting: the batch file's cap (batch.c skips values nested deeper than 32). */
#define SV_MAX_JSON_DEPTH 32
/* Header fields per request; the bytes of all of them are capped by libmicrohttpd's per-connection memory
 * pool (SV_CONN_MEMORY). */
#define SV_MAX_HEADERS 100
#define SV_CONN_MEMORY (64 * 1024)
/* Prompt and negative prompt: the batch file's longest line (SD_BATCH_MAX_LINE). */
#define SV_MAX_PROMPT (64 * 1024)
/* OpenAI's own bound on `n`. */
#define SV_OPENAI_MAX_N 10
/* Seeds given as JSON numbers are exact up to 2^53 (IEEE double); larger ones must be strings. */
#define SV_SEED_EXACT_MAX 9007199254740992.0

typedef enum sv_kind { SV_TXT2IMG = 0, SV_IMG2IMG, SV_OPENAI } sv_kind;

/* What the request parser needs to know about the server (read-only while parsing). */
typedef struct sv_parse_ctx {
    int def_width, def_height;     /* the model's size (sdgen_default_size): width/height 0 or absent */
    int max_clip_skip;             /* the text encoder's layers */
    int can_img2img;               /* the model has a VAE encoder */
    int max_images;                /* batch_size * n_iter (OpenAI n) per request */
    int def_clip_skip;             /* /options CLIP_stop_at_last_layers */
    int def_rng;                   /* /options randn_source: SD_RNG_CPU / SD_RNG_CUDA */
    int save_enabled;              /* --save-dir given */
    const char *model_names[3];    /* what sd_model_checkpoint may say: title, name, file name */
} sv_parse_ctx;

/* A parsed, validated generation request. Text is owned (sv_spec_free). */
typedef struct sv_spec {
    sv_kind kind;
    char *prompt, *negative_prompt;
    int random_seed;               /* seed -1 (or absent): drawn when the job starts */
    uint64_t seed;
    int steps;
    float cfg_scale;               /* float32, as the CLI's --cfg-scale */
    double cfg_requested;          /* as given, for the echo */
    int width, height;             /* 0 with init image: the image's own size */
    int sampler, schedule;         /* sd_sampler, sd_schedule */
    double eta;                    /* A1111's "eta": ddim's η when the sampler is DDIM; -1 = not given */
    int batch_size, n_iter;
    double strength;               /* img2img */
    double denoising_echo;         /* txt2img: echoed only (A1111 uses it for hires fix) */
    int clip_skip;
    int rng_kind;
    int send_images, save_images;
    int include_init_images;
    unsigned char *init_data;      /* img2img: the decoded base64 (PNG/JPEG file bytes) */
    size_t init_len;
    char *init_b64;                /* echoed when include_init_images */
    int url_format;                /* OpenAI response_format "url": data: URLs */
    /* SDXL micro-conditioning, an sdgen extension under diffusers' pipeline argument names (A1111's API has
     * no such fields): original_size [h, w], crops_coords_top_left [top, left], target_size [h, w]; 0 = the
     * default (the image size; crop 0, 0). micro_given: bit 0, 1, 2 when each was in the request. */
    int original_size[2], crop_top_left[2], target_size[2];
    int micro_given;
} sv_spec;

void sv_spec_free(sv_spec *s);

/* Parse and validate a request body of `kind`. On failure: -1, *status = 400 (not JSON, nested too
 * deeply) or 422 (a field's value), err->msg names the field. Nothing the model decides (memory) is
 * checked here: the worker does that with sd_gen_validate. */
int sv_parse_request(const char *body, size_t n, sv_kind kind, const sv_parse_ctx *c, sv_spec *out, int *status,
                     sd_err *err);

/* Before cJSON sees a body: its nesting depth (objects and arrays) is at most max_depth, it holds no NUL
 * byte and no \u0000 escape inside a string (a C string would end there). 0 ok, -1 with a message. */
int sv_json_precheck(const char *s, size_t n, int max_depth, sd_err *err);

/* The A1111 "parameters" echo of a spec (the request with its defaults filled): a cJSON object (cJSON_Delete),
 * or its text (malloc'ed). NULL when out of memory. */
struct cJSON;
struct cJSON *sv_spec_echo(const sv_spec *s);
char *sv_spec_echo_json(const sv_spec *s);

/* POST /sdapi/v1/png-info body {"image": base64 or data URL} -> the response JSON (malloc'ed), or NULL with
 * *status and err. */
char *sv_png_info(const char *body, size_t n, int *status, sd_err *err);

/* POST /sdapi/v1/options: accept the settings it knows (sd_model_checkpoint must name the loaded model;
 * CLIP_stop_at_last_layers; randn_source), ignore the others as A1111 stores them. On success 0 and
 * *clip_skip / *rng updated; -1 with *status and err otherwise. */
int sv_parse_options(const char *body, size_t n, const sv_parse_ctx *c, int *clip_skip, int *rng, int *status,
                     sd_err *err);

/* ---- base64 (RFC 4648 §4, standard alphabet, '=' padding) ---- */

/* Encoded text (NUL-terminated, malloc'ed) of n bytes; NULL when out of memory. */
char *sv_base64_encode(const unsigned char *data, size_t n, size_t *out_len);
/* Decode: ASCII white space is skipped, padding may be missing; any other byte outside the alphabet, or a
 * length that cannot be base64, is an error naming the offset. *out malloc'ed. `what` names the field. */
int sv_base64_decode(const char *text, size_t n, const char *what, unsigned char **out, size_t *out_len, sd_err *err);
/* An init image field: a "data:image/...;base64," prefix is dropped (A1111 decode_base64_to_image). */
int sv_decode_image_field(const char *text, const char *what, unsigned char **out, size_t *out_len, sd_err *err);

/* Strict UTF-8 (RFC 3629); 0 when valid, else the 1-based offset of the first bad byte. */
size_t sv_utf8_bad(const char *s);

/* The JSON error body: A1111's {"error", "detail", "body", "errors"} (modules/api/api.py handle_exception),
 * or OpenAI's {"error": {"message", "type", "param", "code"}} when openai is set. malloc'ed; NULL on OOM. */
char *sv_error_json(int status, const char *detail, int openai);

/* ---- the server ---- */

enum { SV_QUEUED = 0, SV_RUNNING, SV_DONE, SV_DROPPED };

typedef struct sv_job {
    sv_spec spec;
    uint64_t id;
    int state;                     /* SV_QUEUED ... (under sv_server.mu) */
    int stop_reason;               /* 0, or why the job is to stop: 1 interrupt, 2 client gone, 3 shutdown
                                    * (set by other threads under sv_server.mu) */
    volatile sig_atomic_t stop;    /* the worker's own copy, polled by the pipeline between steps: set from
                                    * stop_reason by the worker (in its step callback), so no other thread
                                    * writes what the pipeline reads */
    /* the answer, set by the worker before state becomes SV_DONE */
    int status;
    char *body;                    /* JSON, malloc'ed */
    size_t body_len;
    int images_done, steps_done, steps_total;
} sv_job;

typedef struct sv_conn sv_conn;    /* serve_http.c: one tracked connection */

typedef struct sv_server {
    /* configuration (fixed once serving) */
    const char *model_arg;         /* -m as given: the CLI's "Model" name comes from it */
    char model_name[256];          /* A1111 "Model" */
    char model_title[512];         /* A1111 sd-models title: "name.safetensors [hash]" */
    char model_file[256];          /* the file name alone */
    char model_hash[16];           /* 10 hex digits, "" when unavailable */
    char model_sha256[80];
    int threads;                   /* 0: OpenMP's default */
    int queue_cap;
    int timeout_s;
    size_t max_body;
    int max_connections;
    const char *cors_origin;       /* NULL: no CORS headers */
    int auth;                      /* credentials required */
    unsigned char auth_digest[32]; /* SHA-256 of "user:password" */
    int loopback;                  /* listening on a loopback address only */
    const char *save_dir;          /* NULL: save_images refused */
    char lora_dir[4200];           /* where <lora:NAME> tags are looked up (--lora-dir, else loras/ beside the model) */
    sd_lora_mode lora_mode;        /* --lora-apply */
    sv_parse_ctx pc;               /* defaults and limits for the parser (def_clip_skip/def_rng under mu) */

    sd_pipeline pipe;              /* the worker's alone once serving */

    pthread_mutex_t mu;
    pthread_cond_t cv_work;        /* a job was queued, or stopping */
    pthread_cond_t cv_done;        /* a job finished or left the queue */
    sv_job **queue;                /* ring buffer of queue_cap */
    int q_head, q_len;
    sv_job *running;
    int stopping;                  /* refuse new jobs, cancel the running one */
    int worker_exit;
    uint64_t next_id, save_counter;
    double avg_job_s;              /* for Retry-After */
    /* /sdapi/v1/progress (A1111 shared.state) */
    int prog_job_count, prog_job_no, prog_step, prog_steps, prog_interrupted;
    double prog_t0;
    char prog_timestamp[16];
    const char *prog_job;
    pthread_t worker;
    int worker_started;

    /* connections (serve_http.c) */
    pthread_mutex_t conn_mu;
    sv_conn *conns;
    int active_requests;           /* between the request line and its completion */
    size_t body_bytes;             /* request bodies being received, all connections together */
    size_t body_budget;            /* their bound: 2 x max_body (docs/SERVER.md "Limits") */
    pthread_t watchdog;
    int watchdog_started, watchdog_exit;
    void *daemon;                  /* struct MHD_Daemon * */
} sv_server;

/* serve_worker.c */
int sv_worker_start(sv_server *s, sd_err *err);
/* Queue a job: 0 queued, 1 queue full, 2 stopping. */
int sv_enqueue(sv_server *s, sv_job *j);
/* Interrupt the running job (A1111 /sdapi/v1/interrupt); logs the step it was at. */
void sv_interrupt(sv_server *s);
/* The /sdapi/v1/progress body (malloc'ed). */
char *sv_progress_json(sv_server *s);
/* Refuse new jobs, answer the queued ones 503, cancel the running one, wait for the worker to end. */
void sv_worker_stop(sv_server *s);
void sv_job_free(sv_job *j);
/* Seconds a client should wait before retrying (Retry-After), from the recent job durations. */
int sv_retry_after(sv_server *s);
/* One log line: "TIME sdgen serve: text" (control characters escaped). */
void sv_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* serve_http.c */
int sv_http_start(sv_server *s, int listen_fd, int ipv6, sd_err *err);
/* Stop accepting, let the answers in flight go out (up to a few seconds), close everything. */
void sv_http_stop(sv_server *s);

#endif
