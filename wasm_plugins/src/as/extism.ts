// Minimal Extism plugin kit for AssemblyScript: the kernel ABI ("extism:host/env") and
// helpers to read the input, read config and set the output. Pointers are offsets into
// the Extism kernel's memory, not into this module's memory.

@external("extism:host/env", "input_length")
declare function input_length(): u64;
@external("extism:host/env", "input_load_u8")
declare function input_load_u8(offset: u64): u8;
@external("extism:host/env", "input_load_u64")
declare function input_load_u64(offset: u64): u64;
@external("extism:host/env", "length")
declare function length(ptr: u64): u64;
@external("extism:host/env", "alloc")
declare function alloc(n: u64): u64;
@external("extism:host/env", "free")
declare function free(ptr: u64): void;
@external("extism:host/env", "output_set")
declare function output_set(ptr: u64, n: u64): void;
@external("extism:host/env", "config_get")
declare function config_get(key: u64): u64;
@external("extism:host/env", "store_u8")
declare function store_u8(ptr: u64, v: u8): void;
@external("extism:host/env", "load_u8")
declare function load_u8(ptr: u64): u8;

function writeKernel(s: string): u64 {
  const bytes = Uint8Array.wrap(String.UTF8.encode(s));
  const off = alloc(<u64>bytes.length);
  for (let i = 0; i < bytes.length; i++) store_u8(off + <u64>i, bytes[i]);
  return off;
}

/** The call's input (the hook's JSON document) as a string. */
export function inputString(): string {
  const n = <i32>input_length();
  const bytes = new Uint8Array(n);
  let i = 0;
  for (; i + 8 <= n; i += 8) store<u64>(bytes.dataStart + <usize>i, input_load_u64(<u64>i));
  for (; i < n; i++) bytes[i] = input_load_u8(<u64>i);
  return String.UTF8.decode(bytes.buffer);
}

/** Set the call's output (the verdict JSON). */
export function setOutput(s: string): void {
  const off = writeKernel(s);
  output_set(off, length(off));
}

/** A value from the manifest's [config] table, or `fallback` when it is absent. */
export function config(key: string, fallback: string): string {
  const k = writeKernel(key);
  const v = config_get(k);
  free(k);
  if (v == 0) return fallback;
  const n = <i32>length(v);
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = load_u8(v + <u64>i);
  free(v);
  return String.UTF8.decode(bytes.buffer);
}

/** Non-empty, trimmed, lower-cased lines of a config value (lists arrive newline-joined). */
export function configList(key: string): string[] {
  const out = new Array<string>();
  const lines = config(key, "").split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = normalize(lines[i]);
    if (line.length > 0) out.push(line);
  }
  return out;
}

/** Lower-case and collapse runs of whitespace to one space, so spacing tricks do not evade. */
export function normalize(s: string): string {
  const lower = s.toLowerCase();
  const out = new Array<i32>();
  let space = true;
  for (let i = 0; i < lower.length; i++) {
    const c = lower.charCodeAt(i);
    if (c == 32 || c == 9 || c == 10 || c == 13) {
      if (!space) out.push(32);
      space = true;
    } else {
      out.push(c);
      space = false;
    }
  }
  return String.fromCharCodes(out).trimEnd();
}

/** True when `needle` occurs in `hay` with no letter or digit right before or after it. */
export function containsWord(hay: string, needle: string): bool {
  let from = 0;
  while (true) {
    const at = hay.indexOf(needle, from);
    if (at < 0) return false;
    const end = at + needle.length;
    const beforeOk = at == 0 || !isWordChar(hay.charCodeAt(at - 1));
    const afterOk = end >= hay.length || !isWordChar(hay.charCodeAt(end));
    if (beforeOk && afterOk) return true;
    from = at + 1;
  }
}

function isWordChar(c: i32): bool {
  return (c >= 48 && c <= 57) || (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c == 95;
}

/** A JSON string literal for `s`. */
export function quote(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 34) out += '\\"';
    else if (c == 92) out += "\\\\";
    else if (c == 10) out += "\\n";
    else if (c < 32) out += "\\u00" + (c < 16 ? "0" : "") + c.toString(16);
    else out += String.fromCharCode(c);
  }
  return out + '"';
}

/** Abort handler (replaces AssemblyScript's env.abort import, which Extism does not provide). */
export function abortPlugin(message: string | null, file: string | null, line: u32, col: u32): void {
  unreachable();
}
