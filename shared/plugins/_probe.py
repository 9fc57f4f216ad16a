"""Give a Wasm module one more export that reports its linear memory, so pooled instances can be measured.

    probed = with_memory_probe(wasm)      # None when the module cannot be probed
    pages = instance_call(PROBE_EXPORT)   # the exit code of the call is memory 0's size in pages

Extism's SDK has no way to ask an instance how large its memory has grown, and a pooled
instance keeps whatever it grew. So before compiling, the host appends one function to the
(already digest-checked) module: ``() -> i32`` whose body is ``memory.size 0``, exported as
``PROBE_EXPORT``. Appending keeps every existing index (types, functions) unchanged, so the
module behaves exactly as before. Only the type, function, export and code sections are
touched (their item counts and sizes); everything else is copied byte for byte. A module
this cannot handle (no memory, a missing section, an unknown import kind) is left alone and
simply not measured.
"""

from __future__ import annotations

__all__ = ["PROBE_EXPORT", "with_memory_probe"]

PROBE_EXPORT = "__agl_memory_pages"
"""Name of the added export; a module that already exports it is refused by the host."""

_MAGIC = b"\0asm\x01\0\0\0"
_TYPE, _IMPORT, _FUNCTION, _MEMORY, _EXPORT, _CODE = 1, 2, 3, 5, 7, 10
_PROBE_TYPE = b"\x60\x00\x01\x7f"  # func () -> i32
_PROBE_BODY = b"\x04\x00\x3f\x00\x0b"  # 4 bytes: no locals, memory.size 0, end


class _Malformed(Exception):
    pass


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _encode(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _skip_name(data: bytes, pos: int) -> int:
    n, pos = _uleb(data, pos)
    return pos + n


def _skip_limits(data: bytes, pos: int) -> int:
    flags = data[pos]
    _, pos = _uleb(data, pos + 1)
    if flags & 1:
        _, pos = _uleb(data, pos)
    return pos


def _imports(data: bytes) -> tuple[int, bool]:
    """(imported functions, whether a memory is imported) of an import section."""
    count, pos = _uleb(data, 0)
    functions, memory = 0, False
    for _ in range(count):
        pos = _skip_name(data, _skip_name(data, pos))
        kind = data[pos]
        pos += 1
        if kind == 0:  # function: type index
            _, pos = _uleb(data, pos)
            functions += 1
        elif kind == 1:  # table: reftype, limits
            pos = _skip_limits(data, pos + 1)
        elif kind == 2:  # memory: limits
            pos = _skip_limits(data, pos)
            memory = True
        elif kind == 3:  # global: valtype, mutability
            pos += 2
        elif kind == 4:  # tag: attribute, type index
            _, pos = _uleb(data, pos + 1)
        else:
            raise _Malformed
    return functions, memory


def _append(payload: bytes, item: bytes) -> tuple[bytes, int]:
    """A vector section with ``item`` appended, and the index the item got."""
    count, pos = _uleb(payload, 0)
    return _encode(count + 1) + payload[pos:] + item, count


def with_memory_probe(wasm: bytes) -> bytes | None:
    """``wasm`` with ``PROBE_EXPORT`` added, or None when it cannot be added safely."""
    try:
        return _instrument(wasm)
    except (_Malformed, IndexError):
        return None


def _instrument(wasm: bytes) -> bytes | None:
    if not wasm.startswith(_MAGIC):
        return None
    sections: list[tuple[int, bytes]] = []
    pos = len(_MAGIC)
    while pos < len(wasm):
        size, start = _uleb(wasm, pos + 1)
        if start + size > len(wasm):
            raise _Malformed
        sections.append((wasm[pos], wasm[start : start + size]))
        pos = start + size
    where = {sid: i for i, (sid, _) in enumerate(sections) if sid}  # 0: custom, may repeat
    if not all(sid in where for sid in (_TYPE, _FUNCTION, _EXPORT, _CODE)):
        return None
    imported_functions, memory = (
        _imports(sections[where[_IMPORT]][1]) if _IMPORT in where else (0, False)
    )
    if _MEMORY in where:
        memory = memory or _uleb(sections[where[_MEMORY]][1], 0)[0] > 0
    if not memory:
        return None

    def append(sid: int, item: bytes) -> int:
        payload, index = _append(sections[where[sid]][1], item)
        sections[where[sid]] = (sid, payload)
        return index

    type_index = append(_TYPE, _PROBE_TYPE)
    function_index = imported_functions + append(_FUNCTION, _encode(type_index))
    name = PROBE_EXPORT.encode()
    append(_EXPORT, _encode(len(name)) + name + b"\x00" + _encode(function_index))
    append(_CODE, _PROBE_BODY)
    out = bytearray(_MAGIC)
    for sid, payload in sections:
        out += bytes([sid]) + _encode(len(payload)) + payload
    return bytes(out)
