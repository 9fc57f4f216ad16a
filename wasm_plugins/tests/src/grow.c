/* Hostile test plugin: every call grows linear memory by config "pages" (default 64) and
 * touches each new page, then answers continue. The instance keeps what it grew, so the
 * host must recycle it once it is past its memory.recycle_pages threshold. */
#include "config_number.h"

static volatile u8 *sink;

EXPORT("on_request") int on_request(void) {
  plugin_reset();
  size_t pages = config_number("pages", 64);
  size_t first = __builtin_wasm_memory_grow(0, pages);
  if (first == (size_t)-1) __builtin_trap(); /* over max_pages */
  for (size_t p = 0; p < pages; p++) {
    sink = (volatile u8 *)((first + p) * 65536ul);
    *sink = 1;
  }
  buf_t out = buf_new(32);
  buf_str(&out, "{\"action\":\"continue\"}");
  plugin_output(&out);
  return 0;
}
