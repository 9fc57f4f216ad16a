/* Test plugin: both hooks answer with the manifest's config "verdict", byte for byte.
 * One module, many manifests: ordering, merging and bad-output tests configure it. */
#include "../../src/c/extism_pdk.h"

static int answer(void) {
  plugin_reset();
  int found;
  buf_t v = plugin_config("verdict", &found);
  if (!found) buf_str(&v, "{\"action\":\"continue\"}");
  plugin_output(&v);
  return 0;
}

EXPORT("on_request") int on_request(void) { return answer(); }
EXPORT("on_response") int on_response(void) { return answer(); }
