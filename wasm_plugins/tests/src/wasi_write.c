/* Hostile test plugin (needs grants.wasi): creates "written.txt" in its first preopened
 * directory (fd 3, the first allowed_paths entry) and writes to it. Answers continue when the
 * write worked and reject 403 with the WASI errno when it was refused, so a test can check
 * that allowed_paths is read-only unless the entry says rw:. */
#include "../../src/c/extism_pdk.h"

#define WASI(n) __attribute__((import_module("wasi_snapshot_preview1"), import_name(n)))
typedef struct {
  const u8 *buf;
  size_t len;
} ciovec_t;
WASI("path_open") extern int wasi_path_open(int fd, int dirflags, const char *path, size_t path_len,
                                            int oflags, u64 rights, u64 inheriting, int fdflags,
                                            int *opened);
WASI("fd_write") extern int wasi_fd_write(int fd, const ciovec_t *iovs, size_t n, size_t *written);
WASI("fd_close") extern int wasi_fd_close(int fd);

#define O_CREAT 1
#define O_TRUNC 8
#define RIGHT_FD_WRITE (1ull << 6)

EXPORT("on_request") int on_request(void) {
  plugin_reset();
  const char path[] = "written.txt";
  int fd = -1;
  int err = wasi_path_open(3, 0, path, sizeof path - 1, O_CREAT | O_TRUNC, RIGHT_FD_WRITE, 0, 0, &fd);
  if (!err) {
    ciovec_t iov = {(const u8 *)"plugin was here\n", 16};
    size_t written = 0;
    err = wasi_fd_write(fd, &iov, 1, &written);
    wasi_fd_close(fd);
  }
  buf_t out = buf_new(96);
  if (!err) {
    buf_str(&out, "{\"action\":\"continue\"}");
  } else {
    buf_str(&out, "{\"action\":\"reject\",\"status\":403,\"message\":\"write refused, errno ");
    char digits[12];
    int n = 0;
    do {
      digits[n++] = (char)('0' + err % 10);
      err /= 10;
    } while (err);
    while (n) buf_push(&out, (u8)digits[--n]);
    buf_str(&out, "\"}");
  }
  plugin_output(&out);
  return 0;
}
