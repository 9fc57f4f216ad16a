/* JSON string helpers for plugins without libc: decode a string literal to UTF-8,
 * encode UTF-8 back to a literal, and find where a literal ends. */
#ifndef JSON_TEXT_H
#define JSON_TEXT_H
#include "extism_pdk.h"

/* Index just past the closing quote of the literal whose opening quote is at s[i]. */
static size_t json_string_end(const u8 *s, size_t n, size_t i) {
  for (i++; i < n; i++) {
    if (s[i] == '\\') i++;
    else if (s[i] == '"') return i + 1;
  }
  return n;
}

static int hexval(u8 c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static u32 read_hex4(const u8 *s, size_t n, size_t i) {
  u32 v = 0;
  for (size_t k = 0; k < 4; k++) {
    int h = i + k < n ? hexval(s[i + k]) : -1;
    if (h < 0) return 0xFFFD;
    v = v * 16 + (u32)h;
  }
  return v;
}

static void put_utf8(buf_t *out, u32 cp) {
  if (cp < 0x80) buf_push(out, (u8)cp);
  else if (cp < 0x800) {
    buf_push(out, (u8)(0xC0 | (cp >> 6)));
    buf_push(out, (u8)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    buf_push(out, (u8)(0xE0 | (cp >> 12)));
    buf_push(out, (u8)(0x80 | ((cp >> 6) & 0x3F)));
    buf_push(out, (u8)(0x80 | (cp & 0x3F)));
  } else {
    buf_push(out, (u8)(0xF0 | (cp >> 18)));
    buf_push(out, (u8)(0x80 | ((cp >> 12) & 0x3F)));
    buf_push(out, (u8)(0x80 | ((cp >> 6) & 0x3F)));
    buf_push(out, (u8)(0x80 | (cp & 0x3F)));
  }
}

/* Decode the literal s[start..end) (quotes included) into UTF-8 text. */
static buf_t json_decode(const u8 *s, size_t start, size_t end) {
  buf_t out = buf_new(end - start + 1);
  for (size_t i = start + 1; i + 1 < end; i++) {
    u8 c = s[i];
    if (c != '\\') {
      buf_push(&out, c);
      continue;
    }
    u8 e = s[++i];
    switch (e) {
      case 'n': buf_push(&out, '\n'); break;
      case 't': buf_push(&out, '\t'); break;
      case 'r': buf_push(&out, '\r'); break;
      case 'b': buf_push(&out, '\b'); break;
      case 'f': buf_push(&out, '\f'); break;
      case 'u': {
        u32 cp = read_hex4(s, end, i + 1);
        i += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < end && s[i + 1] == '\\' && s[i + 2] == 'u') {
          u32 lo = read_hex4(s, end, i + 3);
          if (lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          }
        }
        put_utf8(&out, cp);
        break;
      }
      default: buf_push(&out, e); /* \" \\ \/ */
    }
  }
  return out;
}

/* Append text as a JSON string literal (with quotes). */
static void json_encode(buf_t *out, const u8 *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  buf_push(out, '"');
  for (size_t i = 0; i < n; i++) {
    u8 c = s[i];
    if (c == '"' || c == '\\') {
      buf_push(out, '\\');
      buf_push(out, c);
    } else if (c == '\n') buf_str(out, "\\n");
    else if (c == '\r') buf_str(out, "\\r");
    else if (c == '\t') buf_str(out, "\\t");
    else if (c < 0x20) {
      buf_str(out, "\\u00");
      buf_push(out, (u8)hex[c >> 4]);
      buf_push(out, (u8)hex[c & 15]);
    } else buf_push(out, c);
  }
  buf_push(out, '"');
}

static int bytes_eq(const u8 *a, size_t an, const char *b) {
  size_t i = 0;
  for (; i < an && b[i]; i++)
    if (a[i] != (u8)b[i]) return 0;
  return i == an && b[i] == 0;
}

#endif
