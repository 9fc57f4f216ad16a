/* pii_redact: finds e-mail addresses, phone numbers and payment card numbers (Luhn-checked)
 * in message text, replaces them with [EMAIL] / [PHONE] / [CARD], and asks the router to keep
 * the request on the device.
 *
 * on_request  input: {"messages":[...],"model":...,"metadata":{...}}
 *             output: {"action":"continue"} when nothing was found, else
 *                     {"action":"modify","request":{...redacted...},"target":"local_only"}
 *             Only string values under the keys "content" and "text" are redacted.
 * on_response input: {"text":"...","final":bool,"window":n}  ("window" only when streamed)
 *             output: {"action":"continue"} or {"action":"modify","text":"...redacted..."},
 *                     streamed with "hold": the trailing characters that may still grow into
 *                     an e-mail address or a number (left unredacted; see hold_start)
 * config:     route_on_pii  route target to attach when PII is found ("local_only" by default,
 *                           "" for none)
 */
#include "extism_pdk.h"
#include "json_text.h"

static int is_digit(u8 c) { return c >= '0' && c <= '9'; }
static int is_alpha(u8 c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_alnum(u8 c) { return is_digit(c) || is_alpha(c); }
static int is_local(u8 c) {
  return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
static int is_domain(u8 c) { return is_alnum(c) || c == '.' || c == '-'; }
static int is_sep(u8 c) { return c == ' ' || c == '-' || c == '.'; }

/* Luhn checksum over the digits of s[a..b). */
static int luhn_ok(const u8 *s, size_t a, size_t b) {
  u32 sum = 0;
  int dbl = 0;
  for (size_t i = b; i > a; i--) {
    u8 c = s[i - 1];
    if (!is_digit(c)) continue;
    u32 d = (u32)(c - '0');
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum % 10 == 0;
}

/* Length of an e-mail address whose '@' is at s[at], with its start in *start; 0 if none. */
static size_t email_at(const u8 *s, size_t n, size_t at, size_t floor, size_t *start) {
  size_t a = at;
  while (a > floor && is_local(s[a - 1])) a--;
  if (a == at) return 0;
  size_t b = at + 1;
  while (b < n && is_domain(s[b])) b++;
  while (b > at + 1 && (s[b - 1] == '.' || s[b - 1] == '-')) b--; /* sentence punctuation */
  size_t dot = 0;
  for (size_t i = at + 1; i < b; i++)
    if (s[i] == '.') dot = i;
  if (!dot || dot == at + 1 || b - dot < 3) return 0;
  for (size_t i = dot + 1; i < b; i++)
    if (!is_alpha(s[i])) return 0;
  *start = a;
  return b - a;
}

/* What the scan of a streamed text tells hold_start (NULL when nobody asks). */
typedef struct {
  u8 *inside;     /* inside[k]: s[k] continues an item (number or address) begun before it */
  size_t open_at; /* start of a number that more text could still extend (n when none) */
} scan_t;

static void mark(scan_t *sc, size_t a, size_t b) {
  if (sc)
    for (size_t k = a + 1; k < b; k++) sc->inside[k] = 1;
}

/* Redact text into out (when out is not NULL); returns how many items were replaced. */
static int redact(const u8 *s, size_t n, buf_t *out, scan_t *sc) {
  int found = 0;
  size_t i = 0, emitted = 0; /* s[emitted..i) is pending plain text */
  while (i < n) {
    u8 c = s[i];
    if (c == '@') {
      size_t start;
      size_t len = email_at(s, n, i, emitted, &start);
      if (len) {
        mark(sc, start, start + len);
        if (out) buf_append(out, s + emitted, start - emitted);
        if (out) buf_str(out, "[EMAIL]");
        found++;
        i = emitted = start + len;
        continue;
      }
    }
    int starts_number = (is_digit(c) || (c == '+' && i + 1 < n && is_digit(s[i + 1])) ||
                         (c == '(' && i + 1 < n && is_digit(s[i + 1])));
    if (starts_number && (i == 0 || !is_alnum(s[i - 1]))) {
      size_t j = i + 1, digits = is_digit(c);
      while (j < n) {
        if (is_digit(s[j])) {
          digits++;
          j++;
        } else if ((is_sep(s[j]) || s[j] == ')' || s[j] == '(') && j + 1 < n &&
                   is_digit(s[j + 1])) {
          j++; /* one separator between digits: 555-123, 555.123, (555)123 */
        } else if ((s[j] == ')' || is_sep(s[j])) && j + 2 < n &&
                   (s[j + 1] == ' ' || s[j + 1] == '(') && is_digit(s[j + 2])) {
          j += 2; /* "(555) 123" and "+1 (555)" */
        } else break;
      }
      mark(sc, i, j);
      /* Could more text extend it? It ran to the end, or stopped at a separator whose
       * look-ahead ran out of text. */
      if (sc && (j == n ||
                 ((is_sep(s[j]) || s[j] == ')' || s[j] == '(') && j + 1 == n) ||
                 ((s[j] == ')' || is_sep(s[j])) && j + 2 == n &&
                  (s[j + 1] == ' ' || s[j + 1] == '('))))
        sc->open_at = i;
      if (j < n && is_alpha(s[j])) { /* part of an identifier, not a number */
        i = j;
        continue;
      }
      const char *label = 0;
      if (digits >= 13 && digits <= 19 && luhn_ok(s, i, j)) label = "[CARD]";
      else if (digits >= 10 && digits <= 15) label = "[PHONE]";
      if (label) {
        if (out) buf_append(out, s + emitted, i - emitted);
        if (out) buf_str(out, label);
        found++;
        emitted = j;
      }
      i = j;
      continue;
    }
    i++;
  }
  if (out) buf_append(out, s + emitted, n - emitted);
  return found;
}

static int is_word(u8 c) { return is_local(c) || c == '@'; }

/* Where the part of a streamed text that more text could still change begins: the trailing
 * word of address characters (it may precede an '@' or be an address whose domain grows),
 * a number that may go on (a card or phone number split across chunks) and a trailing '('.
 * The cut is moved back until it splits no item and follows a character that can neither
 * be part of an address nor glue a number to a word, so redacting the text before it and
 * the text after it apart gives what redacting them together would. */
static size_t hold_start(const u8 *s, size_t n) {
  scan_t sc = {arena_alloc(n + 1), n};
  for (size_t k = 0; k <= n; k++) sc.inside[k] = 0;
  redact(s, n, 0, &sc);
  size_t p = n;
  if (n && s[n - 1] == '(') p = n - 1;
  if (sc.open_at < p) p = sc.open_at;
  for (;;) {
    size_t q = p;
    while (q > 0 && is_word(s[q - 1])) q--;
    while (q > 0 && q < n && sc.inside[q]) q--;
    if (q == p) return p;
    p = q;
  }
}

/* Value of the top-level key `key` in the JSON object s: its first byte, or n if absent. */
static size_t json_value(const u8 *s, size_t n, const char *key) {
  size_t i = 0;
  int depth = 0;
  while (i < n) {
    u8 c = s[i];
    if (c == '"') {
      size_t end = json_string_end(s, n, i);
      size_t k = end;
      while (k < n && (s[k] == ' ' || s[k] == '\n' || s[k] == '\t' || s[k] == '\r')) k++;
      if (depth == 1 && k < n && s[k] == ':' && bytes_eq(s + i + 1, end - i - 2, key)) {
        for (k++; k < n && (s[k] == ' ' || s[k] == '\n' || s[k] == '\t' || s[k] == '\r'); k++) {
        }
        return k;
      }
      i = end;
      continue;
    }
    if (c == '{' || c == '[') depth++;
    if (c == '}' || c == ']') depth--;
    i++;
  }
  return n;
}

/* Copy the JSON document, redacting string values under "content" and "text" keys. */
static int rewrite(const u8 *s, size_t n, buf_t *out) {
  int found = 0;
  int redact_next = 0;
  size_t i = 0;
  while (i < n) {
    if (s[i] != '"') {
      buf_push(out, s[i++]);
      continue;
    }
    size_t end = json_string_end(s, n, i);
    size_t k = end;
    while (k < n && (s[k] == ' ' || s[k] == '\n' || s[k] == '\t' || s[k] == '\r')) k++;
    if (k < n && s[k] == ':') { /* a key */
      redact_next = bytes_eq(s + i + 1, end - i - 2, "content") ||
                    bytes_eq(s + i + 1, end - i - 2, "text");
      buf_append(out, s + i, end - i);
    } else if (redact_next) {
      buf_t text = json_decode(s, i, end);
      buf_t red = buf_new(text.len + 16);
      int hits = redact(text.data, text.len, &red, 0);
      if (hits) json_encode(out, red.data, red.len);
      else buf_append(out, s + i, end - i);
      found += hits;
    } else {
      buf_append(out, s + i, end - i);
    }
    i = end;
  }
  return found;
}

static void route_suffix(buf_t *out) {
  int has;
  buf_t target = plugin_config("route_on_pii", &has);
  if (!has) buf_str(&target, "local_only");
  if (target.len) {
    buf_str(out, ",\"target\":");
    json_encode(out, target.data, target.len);
  }
}

EXPORT("on_request") int on_request(void) {
  plugin_reset();
  buf_t in = plugin_input();
  buf_t doc = buf_new(in.len + 64);
  buf_t out = buf_new(in.len + 96);
  if (!rewrite(in.data, in.len, &doc)) {
    buf_str(&out, "{\"action\":\"continue\"}");
  } else {
    buf_str(&out, "{\"action\":\"modify\",\"request\":");
    buf_append(&out, doc.data, doc.len);
    route_suffix(&out);
    buf_push(&out, '}');
  }
  plugin_output(&out);
  return 0;
}

EXPORT("on_response") int on_response(void) {
  plugin_reset();
  buf_t in = plugin_input();
  const u8 *s = in.data;
  size_t n = in.len;
  size_t at = json_value(s, n, "text");
  buf_t text = buf_new(1);
  if (at < n && s[at] == '"') text = json_decode(s, at, json_string_end(s, n, at));
  /* Streamed (final false, with the window the host allows): hold what may still grow. */
  size_t fin = json_value(s, n, "final");
  size_t win = json_value(s, n, "window");
  int streamed = fin + 5 <= n && bytes_eq(s + fin, 5, "false") && win < n;
  size_t window = 0;
  for (size_t k = win; streamed && k < n && is_digit(s[k]) && window < 1000000; k++)
    window = window * 10 + (size_t)(s[k] - '0');
  size_t keep = streamed ? hold_start(text.data, text.len) : text.len;
  if (text.len - keep > window) keep = text.len - window; /* the host's cap */
  /* The held tail is ASCII (address and number characters): bytes are characters. */
  buf_t red = buf_new(text.len + 16);
  int found = redact(text.data, keep, &red, 0);
  buf_t out = buf_new(red.len * 2 + text.len - keep + 64);
  if (!found) {
    buf_str(&out, "{\"action\":\"continue\"");
  } else {
    buf_append(&red, text.data + keep, text.len - keep);
    buf_str(&out, "{\"action\":\"modify\",\"text\":");
    json_encode(&out, red.data, red.len);
  }
  if (streamed) {
    char digits[24];
    size_t hold = text.len - keep, d = 0;
    do {
      digits[d++] = (char)('0' + hold % 10);
      hold /= 10;
    } while (hold);
    buf_str(&out, ",\"hold\":");
    while (d) buf_push(&out, (u8)digits[--d]);
  }
  buf_push(&out, '}');
  plugin_output(&out);
  return 0;
}
