/* Hostile test plugin: grows linear memory a page at a time until growing fails, then
 * reports how many pages it got as a reject message ("memhog reached N pages"), so a
 * test can check that memory.max_pages capped it. */
#include "../../src/c/extism_pdk.h"

EXPORT("on_request") int on_request(void) {
  plugin_reset();
  while (__builtin_wasm_memory_grow(0, 1) != (size_t)-1) {
  }
  size_t pages = __builtin_wasm_memory_size(0);
  char digits[12];
  int n = 0;
  do {
    digits[n++] = (char)('0' + pages % 10);
    pages /= 10;
  } while (pages);
  buf_t out = buf_new(96);
  buf_str(&out, "{\"action\":\"reject\",\"status\":507,\"message\":\"memhog reached ");
  while (n) buf_push(&out, (u8)digits[--n]);
  buf_str(&out, " pages\"}");
  plugin_output(&out);
  return 0;
}
