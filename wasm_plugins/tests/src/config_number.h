/* Shared by the hostile test plugins: a non-negative decimal from the manifest's config. */
#ifndef CONFIG_NUMBER_H
#define CONFIG_NUMBER_H
#include "../../src/c/extism_pdk.h"

static size_t config_number(const char *key, size_t fallback) {
  int found;
  buf_t v = plugin_config(key, &found);
  if (!found || v.len == 0) return fallback;
  size_t n = 0;
  for (size_t i = 0; i < v.len && v.data[i] >= '0' && v.data[i] <= '9'; i++)
    n = n * 10 + (size_t)(v.data[i] - '0');
  return n;
}
#endif
