/* Minimal Extism plugin kit for C without libc (clang --target=wasm32 -nostdlib).
 *
 * The imports below are the Extism kernel ABI ("extism:host/env"); every pointer
 * is a 64-bit offset into the kernel's memory, not into this module's memory.
 * Helpers copy input/config into this module's memory and output back out.
 * Memory is a bump arena that plugin_reset() rewinds at the start of each call,
 * so a long-lived instance does not grow across calls.
 */
#ifndef EXTISM_PDK_H
#define EXTISM_PDK_H

typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;
typedef unsigned long size_t;

#define IMPORT(n) __attribute__((import_module("extism:host/env"), import_name(n)))
#define EXPORT(n) __attribute__((export_name(n)))

IMPORT("input_length") extern u64 extism_input_length(void);
IMPORT("input_load_u8") extern u32 extism_input_load_u8(u64 offset);
IMPORT("input_load_u64") extern u64 extism_input_load_u64(u64 offset);
IMPORT("length") extern u64 extism_length(u64 ptr);
IMPORT("alloc") extern u64 extism_alloc(u64 n);
IMPORT("free") extern void extism_free(u64 ptr);
IMPORT("output_set") extern void extism_output_set(u64 ptr, u64 n);
IMPORT("error_set") extern void extism_error_set(u64 ptr);
IMPORT("config_get") extern u64 extism_config_get(u64 key);
IMPORT("store_u8") extern void extism_store_u8(u64 ptr, u32 v);
IMPORT("store_u64") extern void extism_store_u64(u64 ptr, u64 v);
IMPORT("load_u8") extern u32 extism_load_u8(u64 ptr);
IMPORT("load_u64") extern u64 extism_load_u64(u64 ptr);

/* ---- memory: a bump arena over linear memory ---------------------------- */
extern u8 __heap_base;
static size_t heap_top;

static void plugin_reset(void) { heap_top = (size_t)&__heap_base; }

static void *arena_alloc(size_t n) {
  if (heap_top == 0) plugin_reset();
  size_t start = (heap_top + 7) & ~(size_t)7;
  size_t end = start + n;
  size_t have = __builtin_wasm_memory_size(0) * 65536ul;
  if (end > have) {
    size_t pages = (end - have + 65535) / 65536;
    if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) __builtin_trap(); /* over max_pages */
  }
  heap_top = end;
  return (void *)start;
}

/* clang lowers struct copies and loops to these; define them since there is no libc. */
void *memcpy(void *dst, const void *src, size_t n) {
  u8 *d = dst;
  const u8 *s = src;
  while (n--) *d++ = *s++;
  return dst;
}
void *memset(void *dst, int c, size_t n) {
  u8 *d = dst;
  while (n--) *d++ = (u8)c;
  return dst;
}

/* ---- byte buffers --------------------------------------------------------- */
typedef struct {
  u8 *data;
  size_t len;
  size_t cap;
} buf_t;

static buf_t buf_new(size_t cap) {
  buf_t b = {arena_alloc(cap ? cap : 16), 0, cap ? cap : 16};
  return b;
}
static void buf_push(buf_t *b, u8 c) {
  if (b->len == b->cap) {
    u8 *bigger = arena_alloc(b->cap * 2);
    memcpy(bigger, b->data, b->len);
    b->data = bigger;
    b->cap *= 2;
  }
  b->data[b->len++] = c;
}
static void buf_append(buf_t *b, const u8 *s, size_t n) {
  for (size_t i = 0; i < n; i++) buf_push(b, s[i]);
}
static void buf_str(buf_t *b, const char *s) {
  while (*s) buf_push(b, (u8)*s++);
}

/* ---- kernel memory <-> module memory ------------------------------------- */
static void kernel_read(u64 src, u8 *dst, size_t n, int from_input) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    u64 w = from_input ? extism_input_load_u64(i) : extism_load_u64(src + i);
    memcpy(dst + i, &w, 8);
  }
  for (; i < n; i++) dst[i] = (u8)(from_input ? extism_input_load_u8(i) : extism_load_u8(src + i));
}

static u64 kernel_write(const u8 *src, size_t n) {
  u64 off = extism_alloc(n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    u64 w;
    memcpy(&w, src + i, 8);
    extism_store_u64(off + i, w);
  }
  for (; i < n; i++) extism_store_u8(off + i, src[i]);
  return off;
}

/* The whole call input (the hook's JSON document). */
static buf_t plugin_input(void) {
  size_t n = (size_t)extism_input_length();
  buf_t b = buf_new(n + 1);
  kernel_read(0, b.data, n, 1);
  b.len = n;
  return b;
}

/* Set the call's output (the verdict JSON). */
static void plugin_output(const buf_t *b) { extism_output_set(kernel_write(b->data, b->len), b->len); }

/* A config value from the manifest's [config] table; found=0 when the key is absent. */
static buf_t plugin_config(const char *key, int *found) {
  size_t klen = 0;
  while (key[klen]) klen++;
  u64 koff = kernel_write((const u8 *)key, klen);
  u64 voff = extism_config_get(koff);
  extism_free(koff);
  buf_t b = buf_new(16);
  *found = voff != 0;
  if (!voff) return b;
  size_t n = (size_t)extism_length(voff);
  b = buf_new(n + 1);
  kernel_read(voff, b.data, n, 0);
  b.len = n;
  extism_free(voff);
  return b;
}

#endif
