/* sdgen/image.h — RGB8 images: PNG output with A1111 `parameters` metadata, init-image loading,
 * PIL-exact Lanczos resize, the VAE-encoder float conversion, and atomic file writes.
 *
 * PNG output: stb_image_write encodes the pixels; a `parameters` text chunk is then inserted right
 * after IHDR (as PIL's PngImagePlugin places text chunks when A1111 saves): tEXt when the text is
 * representable in Latin-1, else iTXt (UTF-8), exactly PIL's PngInfo.add_text() rule. The file is
 * written to a unique temporary name in the same directory, fsync'ed and renamed, so a crash or
 * SIGINT never leaves a half-written PNG under the final name.
 *
 * Init images (diffusers 0.25.1 VaeImageProcessor, docs/SEMANTICS.md §9.1): decoded with stb_image to
 * RGB8 (alpha dropped as PIL's convert("RGB") does), the size rounded down to multiples of 8, a
 * Lanczos resize (PIL Image.resize(LANCZOS), fixed-point 8-bit path) when that changes it, then
 * image_in = 2·(u8/255) − 1 in float32, NCHW.
 */
#ifndef SDGEN_IMAGE_H
#define SDGEN_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "sdgen/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Caps for untrusted images, checked from the header before any pixel is decoded. */
#define SD_IMAGE_MAX_SIDE 16384
#define SD_IMAGE_MAX_PIXELS (64LL * 1024 * 1024)      /* 64 Mpx = 192 MiB as RGB8 */
#define SD_IMAGE_MAX_FILE_BYTES (256LL * 1024 * 1024)
#define SD_PNG_TEXT_MAX (1 << 20)                     /* longest text chunk written or read */

typedef struct sd_image {
    int w, h;         /* pixels */
    uint8_t *rgb;     /* w*h*3 bytes, row-major, RGB (malloc'ed; sd_image_free) */
} sd_image;

void sd_image_free(sd_image *im);

/* Load a PNG or JPEG file as RGB8 (grey/palette/alpha converted as PIL's convert("RGB"); a JPEG's EXIF
 * orientation applied as diffusers.utils.load_image's ImageOps.exif_transpose does).
 * Errors: "FILE: cannot open: ...", "FILE: not a PNG or JPEG image", "FILE: image too large (WxH)",
 * "FILE: corrupt image: <reason>". */
int sd_image_load(sd_image *out, const char *path, sd_err *err);
/* Same from memory; `name` is used in the messages. */
int sd_image_load_mem(sd_image *out, const void *data, size_t n, const char *name, sd_err *err);

/* Resize with PIL's Image.resize((w, h), Image.LANCZOS) arithmetic (Pillow libImaging/Resample.c:
 * Lanczos a=3 support scaled by the reduction factor, coefficients normalised in double and rounded to
 * 22-bit fixed point, horizontal pass then vertical pass, each rounding to uint8). Equal sizes copy. */
int sd_image_resize_lanczos(const sd_image *in, int w, int h, sd_image *out, sd_err *err);

/* diffusers' init-image size: W, H rounded down to multiples of 8 (VaeImageProcessor
 * get_default_height_width). Fails when either becomes 0. */
int sd_image_init_size(int w, int h, int *w8, int *h8, sd_err *err);

/* RGB8 HWC -> float32 NCHW [1,3,h,w]: (float)u8/255.0f * 2 - 1 (docs/SEMANTICS.md §9.1, bit-exact with numpy). */
void sd_image_to_float(const sd_image *im, float *out);

/* Convenience: load `path`, round its size down to multiples of 8, Lanczos-resize if needed.
 * *resized is set to 1 when a resize happened (so the caller can say so). */
int sd_image_load_init(sd_image *out, const char *path, int *resized, sd_err *err);
/* The same for pixels already in memory (the library API's init image): *out is a new image of `in`
 * rounded down to multiples of 8; `name` is used in the messages. */
int sd_image_init_from(const sd_image *in, const char *name, sd_image *out, int *resized, sd_err *err);

/* ---- PNG output ---- */

/* Encode RGB8 pixels (stride = w*3) as a PNG in memory with an optional text chunk
 * (keyword 1..79 Latin-1 chars, text UTF-8; NULL text = no chunk). *png is malloc'ed. */
int sd_png_encode(const uint8_t *rgb, int w, int h, const char *keyword, const char *text,
                  uint8_t **png, size_t *png_len, sd_err *err);

/* What sd_png_write does with a file already at the path. Whatever the mode, only a regular file is
 * ever replaced: a directory, device node, FIFO, socket or symbolic link there is an error. */
enum {
    SD_WRITE_NEW = 0,               /* never replace: "PATH: already exists" (checked atomically with link()) */
    SD_WRITE_REPLACE = 1,           /* replace a regular file (--overwrite) */
    SD_WRITE_REPLACE_INCOMPLETE = 2 /* replace a regular file only while it is not a complete PNG
                                     * (--skip-existing regenerating a truncated output) */
};

/* sd_png_encode + an atomic write (as sd_file_write_atomic) in mode `overwrite` (SD_WRITE_*). */
int sd_png_write(const char *path, const uint8_t *rgb, int w, int h, const char *parameters,
                 int overwrite, sd_err *err);

/* Insert a tEXt/iTXt chunk after IHDR into an existing PNG byte stream (new buffer in *out). */
int sd_png_insert_text(const uint8_t *png, size_t n, const char *keyword, const char *text,
                       uint8_t **out, size_t *out_len, sd_err *err);

/* Read back the text of the first tEXt / zTXt / iTXt chunk with this keyword, as UTF-8 (*text
 * malloc'ed). Returns 0 and sets *text = NULL when there is no such chunk; -1 on a damaged PNG
 * (bad signature, truncated chunk, CRC mismatch). *is_itxt (may be NULL) tells which kind it was. */
int sd_png_read_text(const char *path, const char *keyword, char **text, int *is_itxt, sd_err *err);
int sd_png_read_text_mem(const uint8_t *png, size_t n, const char *name, const char *keyword,
                         char **text, int *is_itxt, sd_err *err);

/* Is this a complete PNG? Signature, IHDR first, every chunk's CRC, IEND last with nothing after it, and
 * the IDAT data inflates (zlib's own Adler-32 check) to exactly the size IHDR implies; the pixels are not
 * kept. For --skip-existing: an interrupted writer of another program can leave a truncated file. */
int sd_png_verify(const char *path, sd_err *err);
int sd_png_verify_mem(const uint8_t *png, size_t n, const char *name, sd_err *err);

/* PNG/zlib CRC-32 (ISO 3309, polynomial 0xEDB88320 reflected) of a byte range, continuing `crc`
 * (start with 0). */
uint32_t sd_crc32(uint32_t crc, const void *data, size_t n);

/* ---- files ---- */

/* Write data to path atomically: a unique temporary file in the same directory (created with
 * O_EXCL, mode 0666 & ~umask, named ".NAME.tmp-PID-HHHHHHHH", H a hex digit), write, fsync, rename over path (a
 * regular file only, see SD_WRITE_*), fsync the directory (best effort). On failure the temporary file
 * is removed and the message names `path`; EFBIG (the process's file size limit, which the CLI makes
 * an error instead of the SIGXFSZ that would kill it) says so. */
int sd_file_write_atomic(const char *path, const void *data, size_t n, sd_err *err);

/* Remove the temporary files of sd_file_write_atomic that a killed writer left in `dir` (SIGKILL, power
 * loss between write and rename): regular files owned by this user, named exactly as above, last modified
 * before `before_ns` (CLOCK_REALTIME ns: the start of this run), whose PID is not a running process (this
 * process's own PID counts as gone: the file predates it). Returns how many were removed; `first` (n
 * bytes, may be NULL) receives the first one's name. Errors only mean nothing is removed. */
int sd_remove_stale_temps(const char *dir, int64_t before_ns, char *first, size_t n);

/* Is `path` acceptable as an output name: no control character (C0, DEL, C1: they would reach terminals
 * and scripts through every listing), a last component no longer than the file system's NAME_MAX? */
int sd_check_output_name(const char *path, sd_err *err);

/* What is at an output path now (lstat, links not followed): 0 nothing (the folder itself is left to
 * sd_check_output_dir), 1 a regular file (replace or
 * skip it is the caller's choice), -1 with err for anything that must never be replaced (a directory,
 * device node, FIFO, socket, symbolic link, dangling or not) or a path that cannot be looked at. */
int sd_output_state(const char *path, sd_err *err);

/* Can files be created in the directory that will hold `path`? Checked before hours of compute. */
int sd_check_output_dir(const char *path, sd_err *err);

#ifdef __cplusplus
}
#endif
#endif
