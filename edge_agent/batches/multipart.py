"""Reading a ``multipart/form-data`` upload (``POST /v1/files``) with the standard library.

fields, files = parse_form(body, content_type)   # {"purpose": "batch"}, {"file": (name, data)}
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP


class FormError(ValueError):
    """The upload is not readable form data (the message says what is wrong)."""


def parse_form(
    body: bytes, content_type: str
) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """The text fields and the files of a multipart body."""
    if (
        not content_type.lower().startswith("multipart/form-data")
        or "boundary=" not in content_type
    ):
        raise FormError(
            "upload the file as multipart/form-data with the fields file and purpose "
            "(openai: client.files.create(file=..., purpose='batch'))"
        )
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise FormError("the multipart body could not be read; check its boundary")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, data)
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, files
