/* pii_redact: finds e-mail addresses, phone numbers and payment card numbers (Luhn-checked)
 * in message text, replaces them with [EMAIL] / [PHONE] / [CARD], and asks the router to keep
 * the request on the device.
 *
 * on_request  input: {"messages":[...],"model":...,"metadata":{...}}
 *             output: {"action":"continue"} when nothing was found, else
 *                     {"action":"modify","request":{...redacted...},"target":"local_only"}
 *             Only string values under the keys "content" and "text" are redacted.
 * on_response input: {"text":"...","final":bool}
 *             output: {"action":"continue"} or {"action":"modify","text":"...redacted..."}
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

/* Redact text into out; returns how many items were replaced. */
static int redact(const u8 *s, size_t n, buf_t *out) {
  int found = 0;
  size_t i = 0, emitted = 0; /* s[emitted..i) is pending plain text */
  while (i < n) {
    u8 c = s[i];
    if (c == '@') {
      size_t start;
      size_t len = email_at(s, n, i, emitted, &start);
      if (len) {
        buf_append(out, s + emitted, start - emitted);
        buf_str(out, "[EMAIL]");
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
      if (j < n && is_alpha(s[j])) { /* part of an identifier, not a number */
        i = j;
        continue;
      }
      const char *label = 0;
      if (digits >= 13 && digits <= 19 && luhn_ok(s, i, j)) label = "[CARD]";
      else if (digits >= 10 && digits <= 15) label = "[PHONE]";
      if (label) {
        buf_append(out, s + emitted, i - emitted);
        buf_str(out, label);
        found++;
        emitted = j;
      }
      i = j;
      continue;
    }
    i++;
  }
  buf_append(out, s + emitted, n - emitted);
  return found;
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
      int hits = redact(text.data, text.len, &red);
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
  /* The input is {"text":"..."}: the first "text" key's value is the text. */
  buf_t out = buf_new(in.len + 64);
  buf_t doc = buf_new(in.len + 64);
  int found = rewrite(in.data, in.len, &doc);
  if (!found) {
    buf_str(&out, "{\"action\":\"continue\"}");
  } else {
    /* doc is the input object with its text redacted: splice in the action. */
    buf_str(&out, "{\"action\":\"modify\",");
    size_t i = 0;
    while (i < doc.len && doc.data[i] != '{') i++;
    buf_append(&out, doc.data + i + 1, doc.len - i - 1);
  }
  plugin_output(&out);
  return 0;
}
