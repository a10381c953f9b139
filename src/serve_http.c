/* serve_http.c — `sdgen serve`: HTTP through GNU libmicrohttpd (docs/SERVER.md says why that library).
 *
 * libmicrohttpd parses HTTP; this file decides what to answer. One thread per connection (MHD
 * THREAD_PER_CONNECTION): a request that generates waits in its own thread for the worker, polling its
 * socket so that a client that goes away while queued leaves the queue.
 *
 * What a request meets, in order (the first failure answers):
 *   libmicrohttpd   request line and headers within SV_CONN_MEMORY bytes (else its own 431/414/400)
 *   headers         at most SV_MAX_HEADERS fields (431)
 *   Origin          a browser's cross-origin request only from --cors-origin (403); OPTIONS preflight (204)
 *   Host            on a loopback address without credentials, only loopback host names (403): a web page
 *                   cannot reach the server through DNS rebinding
 *   credentials     HTTP Basic (RFC 7617), or the same USER:PASS as a Bearer token, when --api-auth is set;
 *                   compared in constant time (401)
 *   route           404 unknown path, 405 wrong method
 *   body            at most --max-body bytes (413; refused from Content-Length before it is read)
 *   handler         400 not JSON / too deep, 422 bad values, 503 queue full (Retry-After) or shutting down
 * A watchdog closes connections whose request has not fully arrived within --timeout seconds (408 when
 * part of it came): libmicrohttpd's own time-out only notices silence, not a client that trickles a byte
 * every few seconds.
 * Each request is logged once when it ends: time, client, method, path, status, seconds.
 */
#define _GNU_SOURCE /* POLLRDHUP (Linux): the peer closed its end */
#include "serve.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sdgen/hash.h"
#include "sdgen/options.h"
#include "sdgen/rng.h"
#include "sdgen/sched.h"

enum { PH_IDLE = 0, PH_RECEIVING, PH_BUSY };

struct sv_conn {
    sv_conn *next, *prev;
    int fd;
    int phase;       /* PH_*: the watchdog acts on IDLE and RECEIVING only */
    double since;
    int timed_out;   /* closed by the watchdog */
};

/* The endpoints. */
typedef enum {
    R_TXT2IMG, R_IMG2IMG, R_OPENAI, R_PNGINFO, R_INTERRUPT, R_PROGRESS, R_SAMPLERS, R_SCHEDULERS, R_SDMODELS,
    R_OPTIONS_GET, R_OPTIONS_POST, R_EMPTY_LIST, R_LORAS, R_EMBEDDINGS, R_SCRIPTS, R_NULL_POST
} route_id;

static const struct {
    const char *path, *method;
    route_id id;
} ROUTES[] = {
    {"/sdapi/v1/txt2img", "POST", R_TXT2IMG},
    {"/sdapi/v1/img2img", "POST", R_IMG2IMG},
    {"/v1/images/generations", "POST", R_OPENAI},
    {"/sdapi/v1/png-info", "POST", R_PNGINFO},
    {"/sdapi/v1/interrupt", "POST", R_INTERRUPT},
    {"/sdapi/v1/progress", "GET", R_PROGRESS},
    {"/sdapi/v1/samplers", "GET", R_SAMPLERS},
    {"/sdapi/v1/schedulers", "GET", R_SCHEDULERS},
    {"/sdapi/v1/sd-models", "GET", R_SDMODELS},
    {"/sdapi/v1/options", "GET", R_OPTIONS_GET},
    {"/sdapi/v1/options", "POST", R_OPTIONS_POST},
    /* lists front-ends read to fill their menus: sdgen has none of these things */
    {"/sdapi/v1/upscalers", "GET", R_EMPTY_LIST},
    {"/sdapi/v1/latent-upscale-modes", "GET", R_EMPTY_LIST},
    {"/sdapi/v1/sd-vae", "GET", R_EMPTY_LIST},
    {"/sdapi/v1/sd-modules", "GET", R_EMPTY_LIST},
    {"/sdapi/v1/hypernetworks", "GET", R_EMPTY_LIST},
    {"/sdapi/v1/face-restorers", "GET", R_EMPTY_LIST},
    {"/sdapi/v1/realesrgan-models", "GET", R_EMPTY_LIST},
    {"/sdapi/v1/prompt-styles", "GET", R_EMPTY_LIST},
    {"/sdapi/v1/loras", "GET", R_LORAS},
    {"/sdapi/v1/embeddings", "GET", R_EMBEDDINGS},
    {"/sdapi/v1/scripts", "GET", R_SCRIPTS},
    {"/sdapi/v1/refresh-checkpoints", "POST", R_NULL_POST},
    {"/sdapi/v1/refresh-vae", "POST", R_NULL_POST},
    {"/sdapi/v1/refresh-loras", "POST", R_NULL_POST},
};

typedef struct sv_req {
    sv_server *s;
    sv_conn *conn;
    double t0;
    char client[64];
    char method[16];
    char path[256];
    int headers_done, responded, status, openai, cors;
    route_id route;
    char *body;
    size_t len, cap;
    int too_large, too_busy;
    size_t reserved;  /* bytes of the body budget held (body_reserve) */
    const char *note; /* for the log line */
} sv_req;

/* ---- connections and the watchdog ---- */

static sv_conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? (sv_conn *)ci->socket_context : NULL;
}

static int conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    sv_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        sv_conn *k = calloc(1, sizeof *k);
        if (!k) return; /* untracked: libmicrohttpd's idle time-out still applies */
        k->fd = conn_fd(c);
        k->phase = PH_IDLE;
        k->since = sd_now();
        pthread_mutex_lock(&s->conn_mu);
        k->next = s->conns;
        if (s->conns) s->conns->prev = k;
        s->conns = k;
        pthread_mutex_unlock(&s->conn_mu);
        *socket_context = k;
        return;
    }
    /* CLOSED comes before libmicrohttpd closes the socket, and under conn_mu the watchdog cannot be using
     * the descriptor: it is never shut down after its number was given to another connection. */
    sv_conn *k = *socket_context;
    if (!k) return;
    pthread_mutex_lock(&s->conn_mu);
    if (k->prev) k->prev->next = k->next;
    else s->conns = k->next;
    if (k->next) k->next->prev = k->prev;
    pthread_mutex_unlock(&s->conn_mu);
    free(k);
    *socket_context = NULL;
}

static void set_phase(sv_server *s, sv_conn *k, int phase)
{
    if (!k) return;
    pthread_mutex_lock(&s->conn_mu);
    k->phase = phase;
    k->since = sd_now();
    pthread_mutex_unlock(&s->conn_mu);
}

/* Before an answer is queued: the connection is ours (the watchdog leaves it alone) unless the watchdog
 * closed it already, in which case there is nobody to answer. */
static int claim(sv_server *s, sv_conn *k)
{
    if (!k) return 1;
    pthread_mutex_lock(&s->conn_mu);
    int ok = !k->timed_out;
    if (ok) k->phase = PH_BUSY;
    pthread_mutex_unlock(&s->conn_mu);
    return ok;
}

static void *watchdog_main(void *arg)
{
    sv_server *s = arg;
    static const char BODY[] =
        "{\"error\":\"HTTPException\",\"detail\":\"Request Timeout\",\"body\":\"\",\"errors\":\"408: Request Timeout\"}";
    char reply[512];
    int reply_len = snprintf(reply, sizeof reply,
                             "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\n\r\n%s",
                             sizeof BODY - 1, BODY);
    for (;;) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&s->conn_mu);
        if (s->watchdog_exit) {
            pthread_mutex_unlock(&s->conn_mu);
            break;
        }
        double now = sd_now();
        for (sv_conn *k = s->conns; k; k = k->next) {
            if (k->timed_out || k->phase == PH_BUSY || k->fd < 0 || now - k->since <= s->timeout_s) continue;
            /* Part of a request arrived: say why the connection ends (nothing else writes to it now, see
             * claim()). An idle keep-alive connection is closed without a word (RFC 9112 §9.6). */
            if (k->phase == PH_RECEIVING) {
                ssize_t w = send(k->fd, reply, (size_t)reply_len, MSG_NOSIGNAL | MSG_DONTWAIT);
                (void)w;
            }
            shutdown(k->fd, SHUT_RDWR);
            k->timed_out = 1;
        }
        pthread_mutex_unlock(&s->conn_mu);
    }
    return NULL;
}

/* Room for `more` bytes of request body among all connections (conn_mu): a few clients each sending
 * --max-body bytes at once must not add up to more memory than the budget. */
static int body_reserve(sv_server *s, sv_req *r, size_t more)
{
    pthread_mutex_lock(&s->conn_mu);
    int ok = s->body_bytes + more <= s->body_budget;
    if (ok) s->body_bytes += more;
    pthread_mutex_unlock(&s->conn_mu);
    if (ok) r->reserved += more;
    return ok;
}

static void body_release(sv_server *s, sv_req *r)
{
    pthread_mutex_lock(&s->conn_mu);
    s->body_bytes -= r->reserved;
    pthread_mutex_unlock(&s->conn_mu);
    r->reserved = 0;
}

static int is_stopping(sv_server *s)
{
    pthread_mutex_lock(&s->mu);
    int st = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* ---- answers ---- */

static void add_cors(const sv_server *s, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", s->cors_origin);
    MHD_add_response_header(resp, "Vary", "Origin");
    /* Credentials (Basic auth from a page) need an exact origin, never "*" (Fetch standard, CORS protocol). */
    if (strcmp(s->cors_origin, "*")) MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
}

/* Queue an answer; body is malloc'ed and taken (NULL: out of memory, answered with a fixed text). */
static enum MHD_Result respond(sv_req *r, struct MHD_Connection *c, int status, char *body)
{
    sv_server *s = r->s;
    if (r->responded || !claim(s, r->conn)) {
        free(body);
        return r->responded ? MHD_YES : MHD_NO;
    }
    struct MHD_Response *resp;
    if (body) {
        resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    } else {
        static const char OOM[] = "{\"error\":\"HTTPException\",\"detail\":\"out of memory\",\"body\":\"\","
                                  "\"errors\":\"503: out of memory\"}";
        status = 503;
        resp = MHD_create_response_from_buffer(sizeof OOM - 1, (void *)OOM, MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (r->cors) add_cors(s, resp);
    char buf[32];
    if (status == 503) {
        pthread_mutex_lock(&s->mu);
        snprintf(buf, sizeof buf, "%d", sv_retry_after(s));
        pthread_mutex_unlock(&s->mu);
        MHD_add_response_header(resp, "Retry-After", buf);
    }
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Basic realm=\"sdgen\"");
    if (status == 405) {
        for (size_t i = 0; i < sizeof ROUTES / sizeof *ROUTES; i++)
            if (!strcmp(ROUTES[i].path, r->path)) MHD_add_response_header(resp, "Allow", ROUTES[i].method);
    }
    snprintf(buf, sizeof buf, "%.4f", sd_now() - r->t0);
    MHD_add_response_header(resp, "X-Process-Time", buf); /* as A1111's log_and_time middleware */
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->responded = 1;
    r->status = status;
    return ret;
}

static enum MHD_Result respond_error(sv_req *r, struct MHD_Connection *c, int status, const char *detail)
{
    /* OpenAI clients read {"error": {"message"}}; they get 400 where A1111 says 422 */
    if (r->openai && status == 422) status = 400;
    return respond(r, c, status, sv_error_json(status, detail, r->openai));
}

static char *print_json(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static char *dup_text(const char *t)
{
    size_t n = strlen(t) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, t, n);
    return d;
}

/* GET /sdapi/v1/samplers: A1111 SamplerItem {name, aliases, options}; every name and alias is one the CLI's
 * --sampler accepts. */
static char *samplers_json(void)
{
    /* A1111's order: k-diffusion samplers first, then the timestep-based ones */
    static const sd_sampler ORDER[] = {SD_SAMPLER_DPMPP_2M, SD_SAMPLER_DPMPP_2M_SDE, SD_SAMPLER_EULER_A, SD_SAMPLER_EULER,
                                       SD_SAMPLER_LMS,      SD_SAMPLER_HEUN,         SD_SAMPLER_DPM2,    SD_SAMPLER_DPM2_A,
                                       SD_SAMPLER_DDIM,     SD_SAMPLER_UNIPC,        SD_SAMPLER_LCM,     SD_SAMPLER_DDPM};
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < sizeof ORDER / sizeof *ORDER; i++) {
        cJSON *it = cJSON_CreateObject();
        cJSON_AddItemToArray(a, it);
        cJSON_AddStringToObject(it, "name", sd_sampler_a1111_name(ORDER[i]));
        cJSON *al = cJSON_AddArrayToObject(it, "aliases");
        cJSON_AddItemToArray(al, cJSON_CreateString(sd_sampler_name(ORDER[i])));
        cJSON_AddObjectToObject(it, "options");
    }
    return print_json(a);
}

/* GET /sdapi/v1/schedulers: A1111 SchedulerItem, modules/sd_schedulers.py's two that sdgen has. */
static char *schedulers_json(void)
{
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < 2; k++) {
        cJSON *it = cJSON_CreateObject();
        cJSON_AddItemToArray(a, it);
        cJSON_AddStringToObject(it, "name", k ? "karras" : "automatic");
        cJSON_AddStringToObject(it, "label", k ? "Karras" : "Automatic");
        cJSON_AddNullToObject(it, "aliases");
        cJSON_AddNumberToObject(it, "default_rho", k ? 7.0 : -1);
        cJSON_AddFalseToObject(it, "need_inner_model");
    }
    return print_json(a);
}

static char *sd_models_json(const sv_server *s)
{
    cJSON *a = cJSON_CreateArray(), *it = cJSON_CreateObject();
    if (!a || !it) {
        cJSON_Delete(a);
        cJSON_Delete(it);
        return NULL;
    }
    cJSON_AddItemToArray(a, it);
    cJSON_AddStringToObject(it, "title", s->model_title);
    cJSON_AddStringToObject(it, "model_name", s->model_name);
    if (s->model_hash[0]) cJSON_AddStringToObject(it, "hash", s->model_hash);
    else cJSON_AddNullToObject(it, "hash");
    if (s->model_sha256[0]) cJSON_AddStringToObject(it, "sha256", s->model_sha256);
    else cJSON_AddNullToObject(it, "sha256");
    cJSON_AddStringToObject(it, "filename", s->model_arg);
    cJSON_AddNullToObject(it, "config");
    return print_json(a);
}

/* A1111's /sdapi/v1/loras (extensions-builtin/Lora, api_networks): one entry per LoRA a prompt tag can name,
 * here the *.safetensors files of the LoRA folder (--lora-dir, else loras/ beside the model), sorted by name,
 * at most SV_MAX_LORAS of them; no folder: an empty list. The metadata is left empty (A1111 fills it from the
 * file's header on request). */
#define SV_MAX_LORAS 4096

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *loras_json(const sv_server *s)
{
    cJSON *a = cJSON_CreateArray();
    if (!a) return NULL;
    char **names = NULL;
    int n = 0;
    DIR *d = opendir(s->lora_dir);
    if (d) {
        names = calloc(SV_MAX_LORAS, sizeof *names);
        struct dirent *e;
        while (names && n < SV_MAX_LORAS && (e = readdir(d))) {
            const size_t len = strlen(e->d_name), ext = sizeof ".safetensors" - 1;
            if (len <= ext || strcmp(e->d_name + len - ext, ".safetensors")) continue;
            char path[4400];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", s->lora_dir, e->d_name);
            if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
            if (!(names[n] = strdup(e->d_name))) break;
            n++;
        }
        closedir(d);
        qsort(names, (size_t)n, sizeof *names, cmp_names);
    }
    for (int i = 0; i < n; i++) {
        cJSON *it = cJSON_CreateObject();
        if (!it) break;
        cJSON_AddItemToArray(a, it);
        char stem[300], path[4400];
        snprintf(stem, sizeof stem, "%.*s", (int)(strlen(names[i]) - (sizeof ".safetensors" - 1)), names[i]);
        snprintf(path, sizeof path, "%s/%s", s->lora_dir, names[i]);
        cJSON_AddStringToObject(it, "name", stem);
        cJSON_AddStringToObject(it, "alias", stem);
        cJSON_AddStringToObject(it, "path", path);
        cJSON_AddItemToObject(it, "metadata", cJSON_CreateObject());
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return print_json(a);
}

static char *options_json(sv_server *s)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    pthread_mutex_lock(&s->mu);
    int cs = s->pc.def_clip_skip, rng = s->pc.def_rng;
    pthread_mutex_unlock(&s->mu);
    cJSON_AddStringToObject(o, "sd_model_checkpoint", s->model_title);
    if (s->model_sha256[0]) cJSON_AddStringToObject(o, "sd_checkpoint_hash", s->model_sha256);
    else cJSON_AddNullToObject(o, "sd_checkpoint_hash");
    cJSON_AddNumberToObject(o, "CLIP_stop_at_last_layers", cs);
    cJSON_AddStringToObject(o, "randn_source", rng == SD_RNG_CUDA ? "GPU" : "CPU");
    cJSON_AddStringToObject(o, "samples_format", "png");
    cJSON_AddNumberToObject(o, "eta_noise_seed_delta", 0);
    cJSON_AddStringToObject(o, "sd_vae", "Automatic");
    cJSON_AddBoolToObject(o, "samples_save", s->save_dir != NULL);
    return print_json(o);
}

/* ---- generation requests ---- */

static int client_gone(int fd)
{
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void q_remove(sv_server *s, sv_job *j)
{
    for (int i = 0; i < s->q_len; i++) {
        int at = (s->q_head + i) % s->queue_cap;
        if (s->queue[at] != j) continue;
        for (int k = i; k + 1 < s->q_len; k++)
            s->queue[(s->q_head + k) % s->queue_cap] = s->queue[(s->q_head + k + 1) % s->queue_cap];
        s->q_len--;
        return;
    }
}

static enum MHD_Result generate(sv_req *r, struct MHD_Connection *c, sv_kind kind)
{
    sv_server *s = r->s;
    sv_parse_ctx pc;
    pthread_mutex_lock(&s->mu);
    pc = s->pc;
    pthread_mutex_unlock(&s->mu);
    sv_job *j = calloc(1, sizeof *j);
    if (!j) return respond(r, c, 503, NULL);
    int status;
    sd_err err = {0};
    int bad = sv_parse_request(r->body ? r->body : "", r->len, kind, &pc, &j->spec, &status, &err);
    free(r->body); /* the job holds what it needs: the body's memory goes back to the budget now */
    r->body = NULL;
    r->len = r->cap = 0;
    body_release(s, r);
    if (bad) {
        free(j);
        return respond_error(r, c, status, err.msg);
    }
    int q = sv_enqueue(s, j);
    if (q) {
        sv_job_free(j);
        return respond_error(r, c, 503, q == 1 ? "the queue is full: try again later" : "the server is shutting down");
    }
    const int fd = conn_fd(c);
    pthread_mutex_lock(&s->mu);
    while (j->state != SV_DONE) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&s->cv_done, &s->mu, &ts);
        if (j->state == SV_QUEUED && (s->stopping || client_gone(fd))) {
            q_remove(s, j);
            j->state = SV_DROPPED;
            break;
        }
        if (j->state == SV_RUNNING && !j->stop_reason && client_gone(fd)) j->stop_reason = 2;
    }
    const int stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    enum MHD_Result ret;
    if (j->state == SV_DROPPED && stopping) {
        ret = respond_error(r, c, 503, "the server is shutting down");
    } else if (j->state == SV_DROPPED || j->stop_reason == 2) {
        r->note = "client gone";
        sv_log("sdgen serve: job %llu: %s %s left while %s", (unsigned long long)j->id, r->client, r->path,
               j->state == SV_DROPPED ? "queued: dropped from the queue" : "running: cancelled");
        ret = MHD_NO; /* nobody to answer: close */
    } else {
        ret = respond(r, c, j->status, j->body);
        j->body = NULL; /* taken by respond() */
    }
    sv_job_free(j);
    return ret;
}

/* ---- request checks ---- */

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind, (void)key, (void)value;
    (*(int *)cls)++;
    return MHD_YES;
}

/* Host names a browser uses for this machine itself (RFC 6761 localhost, the loopback addresses). */
static int loopback_host(const char *host)
{
    char h[256];
    snprintf(h, sizeof h, "%s", host);
    char *end;
    if (h[0] == '[') { /* [v6]:port */
        end = strchr(h, ']');
        if (!end) return 0;
        *end = 0;
        return !strcmp(h + 1, "::1");
    }
    if ((end = strrchr(h, ':'))) *end = 0;
    if (!strcasecmp(h, "localhost")) return 1;
    struct in_addr a;
    return inet_pton(AF_INET, h, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* Compare digests, not the texts: the time taken does not depend on where the first differing byte is, nor on
 * the length of the real credentials (A1111 uses secrets.compare_digest the same way). */
static int digest_matches(const sv_server *s, const sd_sha256 *h_in)
{
    sd_sha256 h = *h_in;
    uint8_t d[32];
    sd_sha256_final(&h, d);
    volatile unsigned diff = 0;
    for (int i = 0; i < 32; i++) diff |= (unsigned)(d[i] ^ s->auth_digest[i]);
    return diff == 0;
}

/* HTTP Basic (RFC 7617) with USER:PASS, or a Bearer token (RFC 6750) that is the same USER:PASS text, which is
 * how OpenAI clients send their "API key". */
static int auth_ok(sv_server *s, struct MHD_Connection *c, int *had_credentials)
{
    sd_sha256 h;
    sd_sha256_init(&h);
    const char *az = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (az && !strncasecmp(az, "Bearer ", 7)) {
        *had_credentials = 1;
        const char *tok = az + 7;
        while (*tok == ' ') tok++;
        sd_sha256_update(&h, tok, strlen(tok));
        return digest_matches(s, &h);
    }
    char *pass = NULL;
    char *user = MHD_basic_auth_get_username_password(c, &pass);
    int ok = 0;
    *had_credentials = user != NULL;
    if (user && pass) {
        sd_sha256_update(&h, user, strlen(user));
        sd_sha256_update(&h, ":", 1);
        sd_sha256_update(&h, pass, strlen(pass));
        ok = digest_matches(s, &h);
        memset(pass, 0, strlen(pass));
    }
    if (user) MHD_free(user);
    if (pass) MHD_free(pass);
    return ok;
}

/* The first call of a request: headers are in, the body (if any) is not. */
static enum MHD_Result first_call(sv_req *r, struct MHD_Connection *c, const char *method)
{
    sv_server *s = r->s;
    r->openai = !strncmp(r->path, "/v1/", 4); /* its errors in OpenAI's shape from the start (401 included) */
    int n_headers = 0;
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &n_headers);
    if (n_headers > SV_MAX_HEADERS) {
        char m[96];
        snprintf(m, sizeof m, "%d header fields; at most %d are accepted", n_headers, SV_MAX_HEADERS);
        return respond_error(r, c, 431, m);
    }
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (origin) {
        if (!s->cors_origin || (strcmp(s->cors_origin, "*") && strcmp(s->cors_origin, origin))) {
            char m[400], e[300];
            sd_escape_text(origin, e, 200);
            snprintf(m, sizeof m, "cross-origin request from %s refused (sdgen serve --cors-origin allows one origin)", e);
            return respond_error(r, c, 403, m);
        }
        r->cors = 1;
    }
    if (!strcmp(method, "OPTIONS")) { /* CORS preflight (Fetch standard): no credentials are sent with it */
        if (!r->cors) return respond_error(r, c, 405, "Method Not Allowed");
        if (!claim(s, r->conn)) return MHD_NO;
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        add_cors(s, resp);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
        enum MHD_Result ret = MHD_queue_response(c, 204, resp);
        MHD_destroy_response(resp);
        r->responded = 1;
        r->status = 204;
        return ret;
    }
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (s->loopback && !s->auth && host && !loopback_host(host)) {
        char m[400], e[300];
        sd_escape_text(host, e, 200);
        snprintf(m, sizeof m, "Host \"%s\" refused: without --api-auth this server answers only to localhost names", e);
        return respond_error(r, c, 403, m);
    }
    if (s->auth) {
        int had;
        if (!auth_ok(s, c, &had)) return respond_error(r, c, 401, had ? "Incorrect username or password" : "Not authenticated");
    }
    int path_known = 0, found = -1;
    for (size_t i = 0; i < sizeof ROUTES / sizeof *ROUTES; i++) {
        if (strcmp(ROUTES[i].path, r->path)) continue;
        path_known = 1;
        if (!strcmp(ROUTES[i].method, method)) found = (int)i;
    }
    if (found < 0) return respond_error(r, c, path_known ? 405 : 404, path_known ? "Method Not Allowed" : "Not Found");
    r->route = ROUTES[found].id;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    uint64_t len;
    if (cl && sd_parse_u64(cl, &len) == 0 && len > s->max_body) {
        char m[160];
        snprintf(m, sizeof m, "the body is %llu bytes; at most %zu are accepted (--max-body)", (unsigned long long)len,
                 s->max_body);
        return respond_error(r, c, 413, m);
    }
    if (cl && len && !body_reserve(s, r, (size_t)len + 1))
        return respond_error(r, c, 503, "busy receiving other large requests: try again later");
    return MHD_YES;
}

static enum MHD_Result dispatch(sv_req *r, struct MHD_Connection *c)
{
    sv_server *s = r->s;
    if (r->too_large) {
        char m[160];
        snprintf(m, sizeof m, "the body is larger than %zu bytes (--max-body)", s->max_body);
        return respond_error(r, c, 413, m);
    }
    if (r->too_busy) return respond_error(r, c, 503, "busy receiving other large requests: try again later");
    int status;
    sd_err err = {0};
    switch (r->route) {
    case R_TXT2IMG: return generate(r, c, SV_TXT2IMG);
    case R_IMG2IMG: return generate(r, c, SV_IMG2IMG);
    case R_OPENAI: return generate(r, c, SV_OPENAI);
    case R_PNGINFO: {
        char *out = sv_png_info(r->body ? r->body : "", r->len, &status, &err);
        return out ? respond(r, c, 200, out) : respond_error(r, c, status, err.msg);
    }
    case R_INTERRUPT:
        sv_interrupt(s);
        return respond(r, c, 200, dup_text("{}"));
    case R_PROGRESS: return respond(r, c, 200, sv_progress_json(s));
    case R_SAMPLERS: return respond(r, c, 200, samplers_json());
    case R_SCHEDULERS: return respond(r, c, 200, schedulers_json());
    case R_SDMODELS: return respond(r, c, 200, sd_models_json(s));
    case R_OPTIONS_GET: return respond(r, c, 200, options_json(s));
    case R_OPTIONS_POST: {
        pthread_mutex_lock(&s->mu);
        sv_parse_ctx pc = s->pc;
        pthread_mutex_unlock(&s->mu);
        int cs = pc.def_clip_skip, rng = pc.def_rng;
        if (sv_parse_options(r->body ? r->body : "", r->len, &pc, &cs, &rng, &status, &err))
            return respond_error(r, c, status, err.msg);
        pthread_mutex_lock(&s->mu);
        s->pc.def_clip_skip = cs;
        s->pc.def_rng = rng;
        pthread_mutex_unlock(&s->mu);
        return respond(r, c, 200, dup_text("null"));
    }
    case R_EMPTY_LIST: return respond(r, c, 200, dup_text("[]"));
    case R_LORAS: return respond(r, c, 200, loras_json(s));
    case R_EMBEDDINGS: return respond(r, c, 200, dup_text("{\"loaded\":{},\"skipped\":{}}"));
    case R_SCRIPTS: return respond(r, c, 200, dup_text("{\"txt2img\":[],\"img2img\":[]}"));
    case R_NULL_POST: return respond(r, c, 200, dup_text("null"));
    }
    return respond_error(r, c, 404, "Not Found");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)cls, (void)version;
    sv_req *r = *con_cls;
    if (!r) return MHD_NO; /* the request record could not be allocated: close */
    if (!r->headers_done) {
        r->headers_done = 1;
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        r->route = R_EMPTY_LIST;
        if (is_stopping(r->s)) return respond_error(r, c, 503, "the server is shutting down");
        return first_call(r, c, method);
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->responded || r->too_large || r->too_busy) return MHD_YES; /* answered, or refused: discard */
        if (n > r->s->max_body - r->len) {
            r->too_large = 1;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n + 1) cap *= 2;
            if (cap > r->s->max_body + 1) cap = r->s->max_body + 1;
            if (cap > r->reserved && !body_reserve(r->s, r, cap - r->reserved)) { /* chunked: reserved as it grows */
                r->too_busy = 1;
                free(r->body);
                r->body = NULL;
                r->len = r->cap = 0;
                return MHD_YES;
            }
            char *b = realloc(r->body, cap);
            if (!b) return respond(r, c, 503, NULL);
            r->body = b;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload, n);
        r->len += n;
        r->body[r->len] = 0;
        return MHD_YES;
    }
    if (r->responded) return MHD_YES;
    set_phase(r->s, r->conn, PH_BUSY); /* the whole request is in: no more watchdog */
    return dispatch(r, c);
}

/* Called when the request line has arrived, before the headers: the request's record (and its clock). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    sv_server *s = cls;
    sv_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->s = s;
    r->t0 = sd_now();
    r->conn = conn_of(c);
    snprintf(r->method, sizeof r->method, "-");
    snprintf(r->path, sizeof r->path, "%.*s", (int)strcspn(uri, "?"), uri);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(r->client, sizeof r->client, "-");
    if (ci && ci->client_addr) {
        const struct sockaddr *a = ci->client_addr;
        if (a->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)a)->sin_addr, r->client, sizeof r->client);
        else if (a->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)a)->sin6_addr, r->client,
                      sizeof r->client);
    }
    set_phase(s, r->conn, PH_RECEIVING);
    pthread_mutex_lock(&s->conn_mu);
    s->active_requests++;
    pthread_mutex_unlock(&s->conn_mu);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    sv_server *s = cls;
    sv_req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    int timed_out = 0;
    if (r->conn) {
        pthread_mutex_lock(&s->conn_mu);
        timed_out = r->conn->timed_out;
        if (!timed_out) {
            r->conn->phase = PH_IDLE;
            r->conn->since = sd_now();
        }
        pthread_mutex_unlock(&s->conn_mu);
    }
    char status[16];
    int st = r->status;
    if (!st) { /* libmicrohttpd answered by itself (header too large, malformed request), or nobody did */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci && ci->http_status) st = (int)ci->http_status;
    }
    if (timed_out && !r->responded) st = 408;
    if (st) snprintf(status, sizeof status, "%d", st);
    else snprintf(status, sizeof status, "-");
    const char *note = r->note                                      ? r->note
                       : timed_out                                   ? "timed out"
                       : toe == MHD_REQUEST_TERMINATED_COMPLETED_OK  ? NULL
                       : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? "idle time-out"
                       : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT  ? "client closed"
                       : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? "shutdown"
                                                                     : "closed on error";
    sv_log("%s %s %s %s %.3fs%s%s%s", r->client, r->method, r->path, status, sd_now() - r->t0, note ? " (" : "",
           note ? note : "", note ? ")" : "");
    body_release(s, r);
    pthread_mutex_lock(&s->conn_mu);
    s->active_requests--;
    pthread_mutex_unlock(&s->conn_mu);
    free(r->body);
    free(r);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char m[512];
    vsnprintf(m, sizeof m, fmt, ap);
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == '\r')) m[--n] = 0;
    sv_log("sdgen serve: libmicrohttpd: %s", m);
}

int sv_http_start(sv_server *s, int listen_fd, int ipv6, sd_err *err)
{
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, /* first: see its docs */
        MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)s->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SV_CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_END);
    if (!d) return sd_errf(err, "libmicrohttpd could not start the server");
    s->daemon = d;
    int e = pthread_create(&s->watchdog, NULL, watchdog_main, s);
    if (e) {
        MHD_stop_daemon(d);
        s->daemon = NULL;
        return sd_errf(err, "cannot start the time-out thread: %s", strerror(e));
    }
    s->watchdog_started = 1;
    return 0;
}

void sv_http_stop(sv_server *s)
{
    /* the answers of the jobs that just ended are on their way: give them a moment */
    for (int i = 0; i < 50; i++) {
        pthread_mutex_lock(&s->conn_mu);
        int busy = s->active_requests;
        pthread_mutex_unlock(&s->conn_mu);
        if (!busy) break;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (s->watchdog_started) {
        pthread_mutex_lock(&s->conn_mu);
        s->watchdog_exit = 1;
        pthread_mutex_unlock(&s->conn_mu);
        pthread_join(s->watchdog, NULL);
        s->watchdog_started = 0;
    }
    if (s->daemon) MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}
