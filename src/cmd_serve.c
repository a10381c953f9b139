/* cmd_serve.c — `sdgen serve`: load one model and answer the AUTOMATIC1111 web API and OpenAI's images API
 * over HTTP until SIGINT or SIGTERM (docs/SERVER.md).
 *
 * Signals: the first SIGINT or SIGTERM stops the server (no new jobs, queued ones answered 503, the running
 * one cancelled between two steps, the answers sent, exit 0); a second one ends the process at once with
 * the shell's 128 + signal.
 */
#define _GNU_SOURCE /* pipe2 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "serve.h"
#include "sdgen/family.h"
#include "sdgen/hash.h"
#include "sdgen/image.h"
#include "sdgen/options.h"
#include "sdgen/params.h"
#include "sdgen/rng.h"

typedef struct serve_opts {
    const char *model, *vocab, *listen, *auth, *cors, *save_dir, *vae_decoder, *lora_dir;
    sd_lora_mode lora_mode;
    int queue, timeout_s, max_images, max_connections, threads, weights_f32, insecure_no_auth;
    uint64_t max_body;
} serve_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdgen serve [-m MODEL] [--listen HOST:PORT] [--queue N] [--api-auth USER:PASS]\n"
            "                   [--cors-origin ORIGIN] [OPTIONS]\n"
            "\n"
            "Keep one model loaded and answer the AUTOMATIC1111 web API (/sdapi/v1/txt2img, img2img, samplers,\n"
            "schedulers, sd-models, options, progress, interrupt, png-info) and OpenAI's POST /v1/images/generations.\n"
            "One image is generated at a time; requests wait in a bounded queue. See docs/SERVER.md.\n"
            "\n"
            "  -m, --model PATH         .safetensors checkpoint or diffusers folder (default: the demo model)\n"
            "      --vocab PATH         CLIP vocabulary (as for generating)\n"
            "      --vae-decoder PATH   decode with the tiny autoencoder TAESD / TAESDXL (as for generating)\n"
            "      --listen HOST:PORT   address to listen on (default 127.0.0.1:7860; port 0: any free port;\n"
            "                           IPv6 as [::1]:7860). Other than loopback needs --api-auth\n"
            "      --queue N            requests that may wait behind the running one, 1..4096 (default 8);\n"
            "                           more get 503 with Retry-After\n"
            "      --api-auth USER:PASS HTTP Basic credentials every request must carry (or $SDGEN_API_AUTH)\n"
            "      --insecure-no-auth   allow a non-loopback --listen without credentials\n"
            "      --cors-origin ORIGIN let browser pages from ORIGIN (or *) call the API\n"
            "      --timeout SECONDS    idle connections, and requests not fully received in this time, are\n"
            "                           closed, 1..3600 (default 30)\n"
            "      --max-body SIZE      largest request body, init images included (default 64M, at most 1G)\n"
            "      --max-images N       images per request (batch_size x n_iter, OpenAI n), 1..100000 (default 16)\n"
            "      --max-connections N  connections at once, 4..10000 (default 64)\n"
            "      --save-dir DIR       where save_images: true writes PNGs (default: such requests are refused)\n"
            "      --threads N          worker threads (default: all CPUs)\n"
            "      --weights f16|f32    as for generating\n"
            "      --lora-dir DIR       where <lora:NAME> tags in prompts are looked up, and what /sdapi/v1/loras\n"
            "                           lists (default: loras/ beside the model)\n"
            "      --lora-apply auto|merge|fly  as for generating (docs/LORA.md)\n"
            "  -h, --help\n"
            "\n"
            "Prints the base URL on stdout once listening; one log line per request on stderr. SIGINT/SIGTERM:\n"
            "cancel the running job, answer the queued ones 503, exit 0 (a second signal exits at once).\n");
}

static int int_opt(const char *opt, const char *v, long long lo, long long hi, int *out)
{
    long long x;
    if (sd_parse_ll(v, 0, &x) || x < lo || x > hi) {
        sd_cli_say("sdgen serve", "%s expects an integer in [%lld, %lld], got \"%.64s\"", opt, lo, hi, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int parse_args(int argc, char **argv, serve_opts *o)
{
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1:7860";
    o->queue = 8;
    o->timeout_s = 30;
    o->max_images = 16;
    o->max_connections = 64;
    o->max_body = 64ull << 20;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--vocab") || !strcmp(a, "--listen") ||
                    !strcmp(a, "--queue") || !strcmp(a, "--api-auth") || !strcmp(a, "--cors-origin") ||
                    !strcmp(a, "--timeout") || !strcmp(a, "--max-body") || !strcmp(a, "--max-images") ||
                    !strcmp(a, "--max-connections") || !strcmp(a, "--save-dir") || !strcmp(a, "--threads") ||
                    !strcmp(a, "--weights") || !strcmp(a, "--vae-decoder") || !strcmp(a, "--taesd") ||
                    !strcmp(a, "--lora-dir") || !strcmp(a, "--lora-apply");
        if (takes && !v) {
            sd_cli_say("sdgen serve", "%s needs a value (see sdgen serve --help)", a);
            return -1;
        }
        if (takes) i++;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--vocab")) o->vocab = v;
        else if (!strcmp(a, "--vae-decoder") || !strcmp(a, "--taesd")) o->vae_decoder = v;
        else if (!strcmp(a, "--listen")) o->listen = v;
        else if (!strcmp(a, "--api-auth")) o->auth = v;
        else if (!strcmp(a, "--cors-origin")) o->cors = v;
        else if (!strcmp(a, "--save-dir")) o->save_dir = v;
        else if (!strcmp(a, "--insecure-no-auth")) o->insecure_no_auth = 1;
        else if (!strcmp(a, "--lora-dir")) o->lora_dir = v;
        else if (!strcmp(a, "--lora-apply")) {
            if (sd_lora_mode_parse(v, &o->lora_mode)) {
                sd_cli_say("sdgen serve", "--lora-apply: expected auto, merge or fly, got \"%.64s\"", v);
                return -1;
            }
        }
        else if (!strcmp(a, "--queue")) {
            if (int_opt(a, v, 1, 4096, &o->queue)) return -1;
        } else if (!strcmp(a, "--timeout")) {
            if (int_opt(a, v, 1, 3600, &o->timeout_s)) return -1;
        } else if (!strcmp(a, "--max-images")) {
            if (int_opt(a, v, 1, 100000, &o->max_images)) return -1; /* the CLI's --batch-count bound */
        } else if (!strcmp(a, "--max-connections")) {
            if (int_opt(a, v, 4, 10000, &o->max_connections)) return -1;
        } else if (!strcmp(a, "--threads")) {
            if (int_opt(a, v, 1, 1024, &o->threads)) return -1;
        } else if (!strcmp(a, "--max-body")) {
            if (sd_parse_size(v, &o->max_body) || o->max_body < 1024 || o->max_body > (1ull << 30)) {
                sd_cli_say("sdgen serve", "--max-body expects a size from 1K to 1G (K, M, G = 10^3, 10^6, 10^9 bytes), "
                                          "got \"%.64s\"", v);
                return -1;
            }
        } else if (!strcmp(a, "--weights")) {
            if (!strcmp(v, "f32")) o->weights_f32 = 1;
            else if (strcmp(v, "f16")) {
                sd_cli_say("sdgen serve", "--weights: expected f16 or f32, got \"%s\"", v);
                return -1;
            }
        } else {
            sd_cli_say("sdgen serve", "unknown option \"%s\" (see sdgen serve --help)", a);
            return -1;
        }
    }
    if (!o->auth) {
        const char *env = getenv("SDGEN_API_AUTH");
        if (env && *env) o->auth = env;
    }
    if (o->auth && !strchr(o->auth, ':')) {
        sd_cli_say("sdgen serve", "--api-auth expects USER:PASS (the first ':' separates them)");
        return -1;
    }
    if (o->cors && (!*o->cors || sd_find_control(o->cors))) {
        sd_cli_say("sdgen serve", "--cors-origin expects an origin such as http://localhost:3000, or *");
        return -1;
    }
    return 0;
}

/* ---- the listening socket ---- */

typedef struct listen_addr {
    struct sockaddr_storage sa;
    socklen_t len;
    int ipv6, loopback;
} listen_addr;

static int parse_listen(const char *spec, listen_addr *la, sd_err *err)
{
    char host[256];
    const char *port;
    memset(la, 0, sizeof *la);
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof host)
            return sd_errf(err, "--listen %s: expected [IPv6]:PORT", spec);
        snprintf(host, sizeof host, "%.*s", (int)(end - spec - 1), spec + 1);
        port = end + 2;
        la->ipv6 = 1;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon || (size_t)(colon - spec) >= sizeof host) return sd_errf(err, "--listen %s: expected HOST:PORT", spec);
        snprintf(host, sizeof host, "%.*s", (int)(colon - spec), spec);
        port = colon + 1;
    }
    long long p;
    if (sd_parse_ll(port, 0, &p) || p > 65535) return sd_errf(err, "--listen %s: the port must be 0..65535", spec);
    if (!strcmp(host, "localhost")) snprintf(host, sizeof host, "127.0.0.1");
    if (la->ipv6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&la->sa;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)p);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return sd_errf(err, "--listen %s: not an IPv6 address", spec);
        la->len = sizeof *a;
        la->loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
                       (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&la->sa;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)p);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return sd_errf(err, "--listen %s: not an IPv4 address (or localhost; IPv6 goes in brackets)", spec);
        la->len = sizeof *a;
        la->loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    return 0;
}

static int open_listener(const char *spec, const listen_addr *la, int *port, sd_err *err)
{
    int fd = socket(la->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return sd_errf(err, "--listen %s: cannot create a socket: %s", spec, strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* restart while old connections linger */
    if (la->ipv6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&la->sa, la->len) || listen(fd, 128)) {
        int e = errno;
        close(fd);
        return sd_errf(err, "--listen %s: cannot listen: %s", spec, strerror(e));
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    *port = 0;
    if (getsockname(fd, (struct sockaddr *)&got, &gl) == 0)
        *port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                                : ((struct sockaddr_in *)&got)->sin_port);
    return fd;
}

/* ---- signals ---- */

/* The one process-wide state a signal handler can reach: the signal's number (also the model hash's stop
 * flag) and the write end of a pipe that wakes the main thread (POSIX lists write() as async-signal-safe).
 * A handler rather than sigwait(): OpenBLAS starts its threads before main(), with the signals unblocked,
 * so the signal may land on any thread. */
static volatile sig_atomic_t g_stop_signal;
static int g_wake_fd = -1;

static void on_stop_signal(int sig)
{
    if (g_stop_signal) _exit(128 + sig); /* the second one: at once */
    g_stop_signal = sig;
    char c = 1;
    if (write(g_wake_fd, &c, 1) < 0) { /* the pipe is full: the main thread is awake already */
    }
}

/* ---- start-up ---- */

/* What can be refused before anything is loaded: the address, a reachable one without credentials, the
 * save folder. */
static int check_startup(const serve_opts *o, listen_addr *la, sd_err *err)
{
    if (parse_listen(o->listen, la, err)) return -1;
    if (!la->loopback && !o->auth && !o->insecure_no_auth)
        return sd_errf(err, "--listen %s is reachable from other machines: set --api-auth USER:PASS (or "
                            "--insecure-no-auth to serve it without credentials)",
                       o->listen);
    struct stat st;
    if (o->lora_dir && (stat(o->lora_dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        return sd_errf(err, "--lora-dir %s: %s", o->lora_dir,
                       stat(o->lora_dir, &st) != 0 ? strerror(errno) : "not a directory");
    if (o->save_dir) {
        char probe[4096];
        snprintf(probe, sizeof probe, "%s/probe.png", o->save_dir);
        if (sd_check_output_dir(probe, err)) return sd_err_prefix(err, "--save-dir");
    }
    return 0;
}

/* The names A1111 gives a checkpoint (modules/sd_models.py CheckpointInfo): model_name without the
 * extension, title "file.safetensors [shorthash]"; the hash as the CLI writes it into its PNGs.
 * -1 only when a stop signal came while hashing. */
static int set_identity(sv_server *s, const char *model)
{
    sd_params_model_name(model, s->model_name, sizeof s->model_name);
    const char *b = strrchr(model, '/');
    snprintf(s->model_file, sizeof s->model_file, "%s", b && b[1] ? b + 1 : model);
    char hex[65], h10[16];
    sd_err he = {0};
    if (sd_model_hash_stop(model, hex, h10, &g_stop_signal, &he) == 0) {
        snprintf(s->model_hash, sizeof s->model_hash, "%s", h10);
        snprintf(s->model_sha256, sizeof s->model_sha256, "%s", hex);
    } else if (g_stop_signal) {
        return -1;
    }
    if (s->model_hash[0]) snprintf(s->model_title, sizeof s->model_title, "%s [%s]", s->model_file, s->model_hash);
    else snprintf(s->model_title, sizeof s->model_title, "%s", s->model_file);
    return 0;
}

/* The server's settings and the request parser's defaults, from the options and the loaded model. */
static void configure(sv_server *s, const serve_opts *o, const listen_addr *la)
{
    s->threads = o->threads;
    s->queue_cap = o->queue;
    s->timeout_s = o->timeout_s;
    s->max_body = (size_t)o->max_body;
    s->body_budget = 2 * s->max_body;
    s->max_connections = o->max_connections;
    s->cors_origin = o->cors;
    s->save_dir = o->save_dir;
    sd_pipeline_lora_dir(&s->pipe, o->lora_dir, s->lora_dir, sizeof s->lora_dir);
    s->lora_mode = o->lora_mode;
    s->loopback = la->loopback;
    if (o->auth) {
        s->auth = 1;
        sd_sha256_buf(o->auth, strlen(o->auth), s->auth_digest); /* "user:pass", as the header decodes to */
    }
    sd_family_default_size(&s->pipe.model, s->pipe.model.prediction, &s->pc.def_width, &s->pc.def_height);
    s->pc.max_clip_skip = s->pipe.model.text[0].layers_used;
    s->pc.can_img2img = s->pipe.model.vae.has_encoder;
    s->pc.max_images = o->max_images;
    s->pc.def_clip_skip = 1;
    s->pc.def_rng = SD_RNG_CPU; /* the CLI's default, so that the same request gives the CLI's image */
    s->pc.save_enabled = o->save_dir != NULL;
    s->pc.model_names[0] = s->model_title;
    s->pc.model_names[1] = s->model_name;
    s->pc.model_names[2] = s->model_file;

}

/* The listening address as a URL's host: "[v6]" or the IPv4 dotted quad. */
static void listen_host(const listen_addr *la, char *host, size_t n)
{
    if (la->ipv6) {
        char h[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&la->sa)->sin6_addr, h, sizeof h);
        snprintf(host, n, "[%s]", h);
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&la->sa)->sin_addr, host, (socklen_t)n);
    }
}

/* ---- the command ---- */

int sd_cmd_serve(int argc, char **argv)
{
    serve_opts o;
    int pr = parse_args(argc, argv, &o);
    if (pr > 0) return 0;
    if (pr < 0) return SD_EXIT_INPUT;
    sd_err err = {0};
    listen_addr la;
    if (check_startup(&o, &la, &err)) {
        sd_cli_say("sdgen serve", "%s", err.msg);
        return SD_EXIT_INPUT;
    }

    int wake[2];
    if (pipe2(wake, O_CLOEXEC | O_NONBLOCK)) {
        sd_cli_say("sdgen serve", "cannot create a pipe: %s", strerror(errno));
        return SD_EXIT_OOM;
    }
    g_wake_fd = wake[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    sv_server *s = calloc(1, sizeof *s);
    if (!s) {
        sd_cli_say("sdgen serve", "out of memory");
        return SD_EXIT_OOM;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->conn_mu, NULL);
    pthread_cond_init(&s->cv_work, NULL);
    pthread_cond_init(&s->cv_done, NULL);
    int exit_code = 0, pipe_open = 0, fd = -1, mhd_owns_fd = 0;
    char model_buf[4096];
    if (!o.model) {
        if (sd_default_model_path(model_buf, sizeof model_buf, &err)) {
            sd_cli_say("sdgen serve", "%s (pass --model)", err.msg);
            exit_code = SD_EXIT_INPUT;
            goto done;
        }
        o.model = model_buf;
    }
    s->model_arg = o.model;
    double t0 = sd_now();
    if (sd_pipeline_open(&s->pipe, o.model, o.vocab, &err)) {
        sd_cli_say("sdgen serve", "%s", err.msg);
        exit_code = sd_cli_exit_code(err.code);
        goto done;
    }
    pipe_open = 1;
    if ((o.weights_f32 && sd_model_set_weights_mode(&s->pipe.model, SD_WEIGHTS_F32, &err)) ||
        (o.vae_decoder && sd_pipeline_set_taesd(&s->pipe, o.vae_decoder, &err))) {
        sd_cli_say("sdgen serve", "%s", err.msg);
        exit_code = sd_cli_exit_code(err.code);
        goto done;
    }
    if (set_identity(s, o.model)) {
        exit_code = 128 + g_stop_signal; /* stopped while hashing: as the CLI */
        goto done;
    }
    configure(s, &o, &la);

    int port = 0;
    if ((fd = open_listener(o.listen, &la, &port, &err)) < 0 || sv_worker_start(s, &err) ||
        sv_http_start(s, fd, la.ipv6, &err)) {
        sd_cli_say("sdgen serve", "%s", err.msg);
        exit_code = sd_cli_exit_code(err.code);
        goto stop;
    }
    mhd_owns_fd = 1;
    char host[INET6_ADDRSTRLEN + 2];
    listen_host(&la, host, sizeof host);
    sv_log("sdgen serve: model %s (%s) loaded in %.2f s; listening on http://%s:%d/ (queue %d, %s%s)", o.model,
           s->model_title, sd_now() - t0, host, port, s->queue_cap, s->auth ? "credentials required" : "no credentials",
           o.cors ? ", CORS" : "");
    if (printf("http://%s:%d\n", host, port) < 0 || fflush(stdout)) { /* the reader may be gone: keep serving */
    }

    while (!g_stop_signal) {
        struct pollfd p = {.fd = wake[0], .events = POLLIN};
        poll(&p, 1, 1000); /* EINTR and spurious wake-ups: the flag decides */
    }
    int sig = g_stop_signal;
    sv_log("sdgen serve: %s: cancelling the running job, refusing new ones", sig == SIGTERM ? "SIGTERM" : "SIGINT");
stop:
    sv_worker_stop(s);
    sv_http_stop(s);
    if (!exit_code) sv_log("sdgen serve: stopped");
done:
    if (fd >= 0 && !mhd_owns_fd) close(fd); /* libmicrohttpd closes it when it stops */
    if (pipe_open) sd_pipeline_close(&s->pipe);
    free(s->queue);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->conn_mu);
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_done);
    free(s);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    close(wake[0]);
    close(wake[1]);
    return exit_code;
}
