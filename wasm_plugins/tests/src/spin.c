/* Hostile test plugin: never returns. Its timeout_ms must stop it. */
#include "../../src/c/extism_pdk.h"

static volatile u32 counter;

EXPORT("on_request") int on_request(void) {
  for (;;) counter++;
  return 0;
}
EXPORT("on_response") int on_response(void) {
  for (;;) counter++;
  return 0;
}
