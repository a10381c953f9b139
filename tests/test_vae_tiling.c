/* test_vae_tiling.c — sd_vae_decode_tiled (diffusers AutoencoderKL.tiled_decode) against the
 * untiled decoder, on the tiny golden model.
 *
 * The latent is the golden p1 latents_final / 0.18215 (8×8, a real denoised latent) mirrored out
 * to 13×21 (non-square, not a multiple of the tile stride), so it is continuous everywhere.
 * - tile >= the latent: the tiled call is sd_vae_decode, bit for bit;
 * - tile 8 / overlap 2 and tile 16 / overlap 4: bit for bit what diffusers' two-pass algorithm
 *   gives from the same per-tile decodes (written out again here, the diffusers way), and within
 *   measured bounds of the untiled image (each tile normalises over its own pixels);
 * - seams: at tile borders the difference (tiled − untiled) does not step more than it moves in
 *   the pixels beside the border, while the same tiles without overlap (no blend) do step;
 * - arena peak = one tile's decode + the image + two rows of tiles, not the image's decode;
 * - batch of 2, argument errors, encoder shapes unchanged.
 */
#include "sdgen/model.h"
#include "sdgen/npy.h"
#include "sdgen/ops.h"
#include "sdgen/vae.h"
#include "testutil.h"

static sd_model m;

/* base [4, 8, 8] mirrored to [1, 4, h, w]: index 0..7 then 7..0, period 16. */
static sd_tensor mirrored(sd_arena *a, const float *base, int64_t bh, int64_t bw, int64_t h, int64_t w)
{
    sd_tensor z = sd_tensor_4d(a, 1, 4, h, w);
    for (int64_t c = 0; c < 4; c++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++) {
                int64_t my = y % (2 * bh), mx = x % (2 * bw);
                if (my >= bh) my = 2 * bh - 1 - my;
                if (mx >= bw) mx = 2 * bw - 1 - mx;
                z.data[(c * h + y) * w + x] = base[(c * bh + my) * bw + mx];
            }
    return z;
}

/* Decode into a malloc'ed copy (NULL on failure). */
static float *decode(sd_tensor z, int tile, int overlap, size_t *peak)
{
    sd_arena a;
    sd_arena_init(&a, 0, 0);
    sd_err err;
    sd_tensor img;
    int rc = tile ? sd_vae_decode_tiled(&m, &a, z, tile, overlap, &img, &err) : sd_vae_decode(&m, &a, z, &img, &err);
    CHECK(rc == 0, "decode tile %d overlap %d: %s", tile, overlap, rc ? err.msg : "");
    float *out = NULL;
    if (rc == 0) {
        CHECK(img.ne[0] == z.ne[0] && img.ne[1] == 3 && img.ne[2] == 8 * z.ne[2] && img.ne[3] == 8 * z.ne[3],
              "decode tile %d: output shape", tile);
        out = malloc((size_t)sd_numel(img) * sizeof(float));
        memcpy(out, img.data, (size_t)sd_numel(img) * sizeof(float));
    }
    if (peak) *peak = a.peak;
    sd_arena_free(&a);
    return out;
}

static void diff_stats(const float *x, const float *y, int64_t n, double *max_abs, double *mean_abs)
{
    double mx = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - y[i]);
        if (d > mx || d != d) mx = d != d ? INFINITY : d;
        s += d;
    }
    *max_abs = mx;
    *mean_abs = s / (double)n;
}

/* Mean |D[p] − D[p−1]| over channels and the other axis, D = t − u, for the boundary between
 * rows (axis 0) or columns (axis 1) p−1 and p. */
static double jump(const float *t, const float *u, int64_t H, int64_t W, int axis, int64_t p)
{
    double s = 0;
    const int64_t len = axis ? H : W;
    for (int64_t c = 0; c < 3; c++)
        for (int64_t q = 0; q < len; q++) {
            int64_t i1 = axis ? (c * H + q) * W + p : (c * H + p) * W + q;
            int64_t i0 = axis ? i1 - 1 : i1 - W;
            s += fabs((double)(t[i1] - u[i1]) - (double)(t[i0] - u[i0]));
        }
    return s / (double)(3 * len);
}

/* Seam score along one axis: for every tile border (p = start·8 and start·8 + overlap·8 of each
 * tile after the first, starts every tile − overlap latent pixels), the jump at p divided by the
 * largest jump at the 4 positions on either side; returns the largest. A seam is a one-pixel step:
 * larger than anything beside it (without overlap this model measures 1.2-1.6). Inside a linear
 * blend every row moves by about (a − b)/e, so the blend's borders are no larger than the rows
 * beside them (measured 0.6-0.82). */
static double seam_score(const float *t, const float *u, int64_t H, int64_t W, int axis, int tile, int overlap)
{
    const int64_t n = axis ? W : H, S = 8 * (tile - overlap), B = 8 * overlap;
    double worst = 0;
    for (int64_t s = S; s < n; s += S)
        for (int k = 0; k < (B ? 2 : 1); k++) {
            const int64_t p = s + k * B;
            if (p < 5 || p + 4 >= n) continue;
            double beside = 0;
            for (int d = 1; d <= 4; d++) {
                const double jl = jump(t, u, H, W, axis, p - d), jr = jump(t, u, H, W, axis, p + d);
                if (jl > beside) beside = jl;
                if (jr > beside) beside = jr;
            }
            const double r = jump(t, u, H, W, axis, p) / beside;
            if (r > worst) worst = r;
        }
    return worst;
}

/* The same tiled decode written the way diffusers writes it, from sd_vae_decode of each tile's
 * latent: every tile decoded and kept, then blended in place row by row (blend_v, then blend_h),
 * then each tile's first stride·8 rows/columns (the edge tile: all of it) copied out. */
static float *reference_tiled(sd_tensor z, int T, int O)
{
    const int64_t h = z.ne[2], w = z.ne[3], H = 8 * h, W = 8 * w, S = T - O, B = 8 * O;
    int64_t ys[64], xs[64], ny = 0, nx = 0;
    for (int64_t s = 0; s < h; s += S) { ys[ny++] = s; if (s + T >= h) break; }
    for (int64_t s = 0; s < w; s += S) { xs[nx++] = s; if (s + T >= w) break; }
    float *tiles[64][64];
    int64_t th[64], tw[64];
    for (int64_t i = 0; i < ny; i++) th[i] = 8 * (ys[i] + T < h ? T : h - ys[i]);
    for (int64_t j = 0; j < nx; j++) tw[j] = 8 * (xs[j] + T < w ? T : w - xs[j]);
    sd_arena a;
    sd_arena_init(&a, 0, 0);
    for (int64_t i = 0; i < ny; i++)
        for (int64_t j = 0; j < nx; j++) {
            const int64_t lh = th[i] / 8, lw = tw[j] / 8;
            sd_tensor zt = sd_tensor_4d(&a, 1, 4, lh, lw), img;
            for (int64_t c = 0; c < 4; c++)
                for (int64_t y = 0; y < lh; y++)
                    for (int64_t x = 0; x < lw; x++)
                        zt.data[(c * lh + y) * lw + x] = z.data[(c * h + ys[i] + y) * w + xs[j] + x];
            sd_err err;
            int rc = sd_vae_decode(&m, &a, zt, &img, &err);
            CHECK(rc == 0, "reference tile: %s", rc ? err.msg : "");
            tiles[i][j] = malloc((size_t)(3 * th[i] * tw[j]) * sizeof(float));
            if (rc == 0) memcpy(tiles[i][j], img.data, (size_t)(3 * th[i] * tw[j]) * sizeof(float));
            sd_arena_reset(&a);
        }
    sd_arena_free(&a);
    float *out = calloc((size_t)(3 * H * W), sizeof(float));
    for (int64_t i = 0; i < ny; i++)
        for (int64_t j = 0; j < nx; j++) {
            float *b = tiles[i][j];
            const int64_t bh = th[i], bw = tw[j];
            if (i > 0) { /* blend_v(rows[i-1][j], tile) */
                const float *up = tiles[i - 1][j];
                const int64_t ah = th[i - 1];
                const int64_t e = ah < bh ? (ah < B ? ah : B) : (bh < B ? bh : B);
                for (int64_t y = 0; y < e; y++)
                    for (int64_t c = 0; c < 3; c++)
                        for (int64_t x = 0; x < bw; x++) {
                            volatile float p = up[(c * ah + ah - e + y) * bw + x] * (float)(1.0 - (double)y / e);
                            volatile float q = b[(c * bh + y) * bw + x] * (float)((double)y / e);
                            b[(c * bh + y) * bw + x] = p + q;
                        }
            }
            if (j > 0) { /* blend_h(row[j-1], tile) */
                const float *left = tiles[i][j - 1];
                const int64_t aw = tw[j - 1];
                const int64_t e = aw < bw ? (aw < B ? aw : B) : (bw < B ? bw : B);
                for (int64_t x = 0; x < e; x++)
                    for (int64_t c = 0; c < 3; c++)
                        for (int64_t y = 0; y < bh; y++) {
                            volatile float p = left[(c * bh + y) * aw + aw - e + x] * (float)(1.0 - (double)x / e);
                            volatile float q = b[(c * bh + y) * bw + x] * (float)((double)x / e);
                            b[(c * bh + y) * bw + x] = p + q;
                        }
            }
        }
    for (int64_t i = 0; i < ny; i++)
        for (int64_t j = 0; j < nx; j++) {
            const int64_t kh = i + 1 < ny ? 8 * S : th[i], kw = j + 1 < nx ? 8 * S : tw[j];
            for (int64_t c = 0; c < 3; c++)
                for (int64_t y = 0; y < kh; y++)
                    for (int64_t x = 0; x < kw; x++)
                        out[(c * H + 8 * ys[i] + y) * W + 8 * xs[j] + x] = tiles[i][j][(c * th[i] + y) * tw[j] + x];
            free(tiles[i][j]);
        }
    return out;
}

int main(void)
{
    sd_test_require_shared();
    sd_err err;
    if (sd_model_open(&m, sd_test_path("golden/models/tiny-sd1.safetensors"), &err)) {
        CHECK(0, "open tiny-sd1: %s", err.msg);
        TEST_MAIN_END();
    }
    sd_npy lat;
    if (sd_npy_read(&lat, sd_test_path("golden/cases/p1-tiny-sd1-ddim/latents_final.npy"), &err)) {
        CHECK(0, "%s", err.msg);
        TEST_MAIN_END();
    }
    CHECK(lat.numel == 4 * 8 * 8, "p1 latent is [1, 4, 8, 8]");
    /* diffusers: latents / scaling_factor, a float32 division */
    for (int64_t i = 0; i < lat.numel; i++) lat.f32[i] = lat.f32[i] / 0.18215f;

    sd_arena za;
    sd_arena_init(&za, 0, 0);
    /* 13 x 21 with tile 8 / overlap 2 (stride 6): rows start 0, 6 (6 + 8 >= 13 reaches the edge, so
     * no 1-row tile at 12 as diffusers would add), columns 0, 6, 12, 18 (the last 3 wide). */
    const int64_t h = 13, w = 21, H = 8 * h, W = 8 * w, N = 3 * H * W;
    sd_tensor z = mirrored(&za, lat.f32, 8, 8, h, w);

    size_t peak_u = 0, peak_t = 0, peak_tile = 0;
    float *ref = decode(z, 0, 0, &peak_u);
    if (!ref) TEST_MAIN_END();

    /* Tile covering the whole latent: the untiled decode, same bits. */
    float *one = decode(z, 21, 4, NULL);
    CHECK(one && !memcmp(one, ref, (size_t)N * sizeof(float)), "tile 21 (whole latent) differs from sd_vae_decode");
    free(one);

    /* tile 8 / overlap 2: exactly diffusers' tiles and blends (an independent two-pass version from
     * per-tile sd_vae_decode calls), close to the untiled image, no seams. */
    float *t = decode(z, 8, 2, &peak_t);
    float *want = reference_tiled(z, 8, 2);
    CHECK(t && !memcmp(t, want, (size_t)N * sizeof(float)), "tile 8 / overlap 2 differs from the two-pass reference");
    free(want);
    if (t) {
        /* Not small on this model: its weights are random and its 64-pixel tiles normalise
         * (GroupNorm) over a few latent pixels each, so every tile moves its image by much more than
         * a trained SD VAE on 512-pixel tiles. Measured here: max abs 0.869, mean abs 0.109 (in
         * [-1, 1] units); the bounds are 1.4x / 1.3x that, to catch a wrong tile or crop (which
         * the bit-exact reference check above pins anyway). docs/VAE_TILING.md has more numbers. */
        double mx, mean;
        diff_stats(t, ref, N, &mx, &mean);
        printf("tile 8 overlap 2: tiled vs untiled max abs %.4g mean abs %.4g (bounds 1.2 / 0.14)\n", mx, mean);
        CHECK(mx <= 1.2 && mean <= 0.14, "tile 8 overlap 2: difference too large");

        /* Seams: the difference must not jump at tile borders more than it typically moves from one
         * row (column) to the next. Control: the same tiles without overlap (nothing blended) do. */
        float *hard = decode(z, 8, 0, NULL);
        for (int axis = 0; axis < 2 && hard; axis++) {
            const double sb = seam_score(t, ref, H, W, axis, 8, 2), sh = seam_score(hard, ref, H, W, axis, 8, 0);
            printf("  %s: seam score (border jump / largest jump within 4 px) %.3f blended, %.3f without overlap\n",
                   axis ? "columns" : "rows", sb, sh);
            CHECK(sb <= 1.0, "seam along %s: score %.3f", axis ? "columns" : "rows", sb);
            CHECK(sh >= 1.1, "control: no seam detected without overlap (score %.3f)", sh);
        }
        free(hard);
    }

    /* Arena: one tile's decode plus the image and two rows of decoded tiles, not the image's decode. */
    {
        sd_tensor z8 = mirrored(&za, lat.f32, 8, 8, 8, 8);
        float *t8 = decode(z8, 0, 0, &peak_tile);
        free(t8);
        const size_t extra = (size_t)(N + 2 * 4 * 3 * 64 * 64) * sizeof(float) + ((size_t)1 << 20);
        printf("arena peak: untiled %.2f MB, tiled 8/2 %.2f MB, one 8x8 tile %.2f MB (+ image and tile rows %.2f MB)\n",
               peak_u / 1048576.0, peak_t / 1048576.0, peak_tile / 1048576.0, extra / 1048576.0);
        CHECK(peak_t <= peak_tile + extra, "tiled arena peak %zu over one tile's %zu + %zu", peak_t, peak_tile, extra);
        /* sd_vae_decode_bytes (for memory checks before a run) covers what the calls used. */
        const size_t est_t = sd_vae_decode_bytes(&m, 1, h, w, 8, 2), est_u = sd_vae_decode_bytes(&m, 1, h, w, 0, 0);
        printf("sd_vae_decode_bytes: tiled %.2f MB, untiled %.2f MB\n", est_t / 1048576.0, est_u / 1048576.0);
        CHECK(est_t >= peak_t && est_u >= peak_u && est_t < est_u, "sd_vae_decode_bytes %zu / %zu vs peaks %zu / %zu",
              est_t, est_u, peak_t, peak_u);
        CHECK(sd_vae_decode_bytes(&m, 1, h, w, 21, 4) == est_u, "one-tile estimate is the untiled one");
        CHECK(sd_vae_decode_bytes(&m, 1, h, w, 3, 1) == 0 && sd_vae_decode_bytes(&m, 1, h, w, 8, 5) == 0,
              "sd_vae_decode_bytes accepts a tile the decoder refuses");
    }

    /* tile 16 / overlap 4 on the same latent: one row of 2 tiles (13 <= 16). */
    {
        float *t16 = decode(z, 16, 4, NULL);
        float *w16 = reference_tiled(z, 16, 4);
        CHECK(t16 && !memcmp(t16, w16, (size_t)N * sizeof(float)), "tile 16 / overlap 4 differs from the reference");
        if (t16) {
            double mx, mean;
            diff_stats(t16, ref, N, &mx, &mean);
            /* measured max abs 0.604, mean abs 0.055: larger tiles, smaller difference */
            printf("tile 16 overlap 4: tiled vs untiled max abs %.4g mean abs %.4g (bounds 0.85 / 0.075)\n", mx, mean);
            CHECK(mx <= 0.85 && mean <= 0.075, "tile 16: difference too large");
        }
        free(t16);
        free(w16);
    }
    free(t);
    free(ref);

    /* Batch of 2 (z, z/2) on 9x9 (2x2 tiles): item 0 is the single-item tiled decode, bit for bit. */
    {
        sd_tensor z9 = mirrored(&za, lat.f32, 8, 8, 9, 9);
        int64_t s2[4] = {2, 4, 9, 9};
        sd_tensor zz = sd_tensor_new(&za, 4, s2);
        for (int64_t i = 0; i < sd_numel(z9); i++) {
            zz.data[i] = z9.data[i];
            zz.data[sd_numel(z9) + i] = z9.data[i] * 0.5f;
        }
        float *b2 = decode(zz, 8, 2, NULL), *b1 = decode(z9, 8, 2, NULL);
        CHECK(b1 && b2 && !memcmp(b1, b2, (size_t)(3 * 72 * 72) * sizeof(float)), "batch of 2: item 0 differs");
        free(b1);
        free(b2);
    }

    /* Argument errors. */
    {
        sd_arena a;
        sd_arena_init(&a, 0, 0);
        sd_tensor img;
        CHECK(sd_vae_decode_tiled(&m, &a, z, 3, 1, &img, &err) != 0, "tile 3 accepted");
        CHECK(sd_vae_decode_tiled(&m, &a, z, 8, 5, &img, &err) != 0, "overlap > tile/2 accepted");
        CHECK(sd_vae_decode_tiled(&m, &a, z, 8, -1, &img, &err) != 0, "negative overlap accepted");
        sd_tensor bad = z;
        bad.ne[1] = 3;
        CHECK(sd_vae_decode_tiled(&m, &a, bad, 8, 2, &img, &err) != 0, "3-channel latent accepted");
        sd_arena_free(&a);
    }

    /* Encoder shapes unchanged: [1, 3, 64, 96] -> moments [1, 8, 8, 12]. */
    {
        sd_arena a;
        sd_arena_init(&a, 0, 0);
        sd_tensor x = sd_tensor_4d(&a, 1, 3, 64, 96), mom;
        for (int64_t i = 0; i < sd_numel(x); i++) x.data[i] = (float)((i * 37) % 200) / 100.0f - 1.0f;
        int rc = sd_vae_encode(&m, &a, x, &mom, &err);
        CHECK(rc == 0 && mom.ndim == 4 && mom.ne[0] == 1 && mom.ne[1] == 8 && mom.ne[2] == 8 && mom.ne[3] == 12,
              "encode shape: rc %d %s", rc, rc ? err.msg : "");
        sd_arena_free(&a);
    }

    sd_arena_free(&za);
    sd_npy_free(&lat);
    sd_model_close(&m);
    TEST_MAIN_END();
}
