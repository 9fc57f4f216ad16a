// Pulls message text out of a request document without a full JSON parser: every string
// value whose key is "content" or "text" (plain and multi-part messages), decoded.

function decode(s: string, start: i32, end: i32): string {
  if (s.substring(start + 1, end - 1).indexOf("\\") < 0) return s.substring(start + 1, end - 1);
  const out = new Array<i32>();
  for (let i = start + 1; i < end - 1; i++) {
    const c = s.charCodeAt(i);
    if (c != 92) {
      out.push(c);
      continue;
    }
    i++;
    const e = s.charCodeAt(i);
    if (e == 110) out.push(10);
    else if (e == 116) out.push(9);
    else if (e == 114) out.push(13);
    else if (e == 98 || e == 102) out.push(32);
    else if (e == 117) {
      out.push(<i32>parseInt(s.substring(i + 1, i + 5), 16));
      i += 4;
    } else out.push(e);
  }
  return String.fromCharCodes(out);
}

function stringEnd(s: string, i: i32): i32 {
  for (i++; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 92) i++;
    else if (c == 34) return i + 1;
  }
  return s.length;
}

/** The text of every "content"/"text" string value in the document, newline-joined. */
export function messageText(doc: string): string {
  const parts = new Array<string>();
  let wanted = false;
  let i = 0;
  while (i < doc.length) {
    if (doc.charCodeAt(i) != 34) {
      i++;
      continue;
    }
    const end = stringEnd(doc, i);
    let k = end;
    while (k < doc.length && doc.charCodeAt(k) <= 32) k++;
    if (k < doc.length && doc.charCodeAt(k) == 58) {
      const key = doc.substring(i + 1, end - 1);
      wanted = key == "content" || key == "text";
    } else if (wanted) {
      parts.push(decode(doc, i, end));
      wanted = false;
    }
    i = end;
  }
  return parts.join("\n");
}
