"""Streaming `multipart/form-data` uploads straight into a store writer.

werkzeug's sans-IO decoder splits the body; file bytes go to the temp writer as they arrive,
so a large upload is never whole in memory (werkzeug's own form parser would spool it to a
second temp file first). Small text fields are kept, with a size cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from l1web.errors import BadRequest, PayloadTooLarge
from l1web.store.ingest import CHUNK, Readable, TempWriter

#: Most bytes the decoder may buffer between events (1 MiB chunk plus headers).
MAX_BUFFER = 2 * CHUNK + 64 * 1024
#: Most parts a form may have (the file plus a few fields).
MAX_PARTS = 16
#: Most bytes of all text fields together.
MAX_FIELD_BYTES = 16 * 1024


@dataclass
class Form:
    """What arrived besides the file bytes."""

    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    found_file: bool = False


def read_multipart(
    stream: Readable, boundary: bytes, writer: TempWriter, *, file_field: str = "file",
) -> Form:
    """Feed the part named `file_field` into `writer`; the text fields and file name come back."""
    decoder = MultipartDecoder(boundary, max_form_memory_size=MAX_BUFFER, max_parts=MAX_PARTS)
    form = Form()
    sink = _Sink(form, writer, file_field)
    try:
        while True:
            chunk = stream.read(CHUNK)
            decoder.receive_data(chunk or None)
            if _drain(decoder, sink) or not chunk:
                break
    except RequestEntityTooLarge:
        raise PayloadTooLarge("multipart form has too many parts or an oversized header") from None
    except ValueError as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    if not form.found_file:
        raise BadRequest(f"multipart upload has no file part named {file_field!r}")
    return form


class _Sink:
    """Routes decoder events: the chosen file part to the writer, text fields to the form."""

    def __init__(self, form: Form, writer: TempWriter, file_field: str) -> None:
        self.form, self.writer, self.file_field = form, writer, file_field
        self.target: str | None = None  # "file", a field name, or None to skip
        self.field_bytes = 0

    def start(self, event: Field | File) -> None:
        if isinstance(event, File) and event.name == self.file_field and not self.form.found_file:
            self.form.found_file, self.form.filename, self.target = True, event.filename, "file"
        elif isinstance(event, Field):
            self.target = event.name
            self.form.fields.setdefault(event.name, "")
        else:
            self.target = None

    def data(self, payload: bytes) -> None:
        if self.target == "file":
            self.writer.write(payload)
        elif self.target is not None:
            self.field_bytes += len(payload)
            if self.field_bytes > MAX_FIELD_BYTES:
                raise PayloadTooLarge("multipart text fields are too large")
            self.form.fields[self.target] += payload.decode("utf-8", "replace")


def _drain(decoder: MultipartDecoder, sink: _Sink) -> bool:
    """Handle every event the buffered data yields; True once the closing boundary is seen."""
    while True:
        event = decoder.next_event()
        if isinstance(event, NeedData):
            return False
        if isinstance(event, Epilogue):
            return True
        if isinstance(event, (Field, File)):
            sink.start(event)
        elif isinstance(event, Data):
            sink.data(event.data)
