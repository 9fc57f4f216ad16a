/* Hostile test plugin: imports WASI to open files. Without grants.wasi the module does not
 * link, so it is refused at load time. */
#include "../../src/c/extism_pdk.h"

__attribute__((import_module("wasi_snapshot_preview1"), import_name("path_open"))) extern int
wasi_path_open(int fd, int dirflags, const char *path, int path_len, int oflags, u64 rights,
               u64 inheriting, int fdflags, int *opened);

EXPORT("on_request") int on_request(void) {
  int fd;
  const char path[] = "/etc/passwd";
  wasi_path_open(3, 0, path, sizeof path - 1, 0, ~0ull, ~0ull, 0, &fd);
  return 0;
}
