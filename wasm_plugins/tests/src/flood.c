/* Hostile test plugin: both hooks answer a reject whose message is config "bytes" (default
 * 1 MiB) of 'x', so the verdict is larger than the bytes; max_output_bytes must stop it. */
#include "config_number.h"

static int answer(void) {
  plugin_reset();
  size_t n = config_number("bytes", 1048576);
  buf_t out = buf_new(n + 64);
  buf_str(&out, "{\"action\":\"reject\",\"status\":400,\"message\":\"");
  for (size_t i = 0; i < n; i++) out.data[out.len++] = 'x';
  buf_str(&out, "\"}");
  plugin_output(&out);
  return 0;
}

EXPORT("on_request") int on_request(void) { return answer(); }
EXPORT("on_response") int on_response(void) { return answer(); }
