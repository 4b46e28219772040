"""The streaming multipart parser: part boundaries found across any chunk split, limits enforced."""

import io
import random

import pytest

from l1web.errors import BadRequest, PayloadTooLarge
from l1web.store import multipart
from l1web.store.multipart import read_multipart

BOUNDARY = b"l1-test-boundary"


class Collector:
    """Stands in for the store's TempWriter (pure parser tests)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> None:
        self.data += chunk


class Trickle(io.RawIOBase):
    """A stream that answers every read with at most `step` bytes, to split boundaries anywhere."""

    def __init__(self, body: bytes, step: int) -> None:
        self.body, self.step, self.at = body, step, 0

    def read(self, size: int = -1) -> bytes:
        size = self.step if size < 0 else min(size, self.step)
        chunk = self.body[self.at:self.at + size]
        self.at += len(chunk)
        return chunk


def form(*parts: tuple[str, str | None, bytes], boundary: bytes = BOUNDARY, preamble: bytes = b"") -> bytes:
    out = [preamble]
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.append(b"--" + boundary + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n")
        if filename:
            out.append(b"Content-Type: application/octet-stream\r\n")
        out.append(b"\r\n" + data + b"\r\n")
    out.append(b"--" + boundary + b"--\r\n")
    return b"".join(out)


def parse(body: bytes, step: int = 1 << 20):
    sink = Collector()
    return read_multipart(Trickle(body, step), BOUNDARY, sink), bytes(sink.data)


@pytest.mark.parametrize("step", [1, 3, 17, 18, 19, 4096])
def test_the_file_part_survives_any_split_of_the_stream(step):
    rng = random.Random(step)
    # Bytes that look like the start of a delimiter, inside the file, must stay file bytes.
    data = rng.randbytes(3000) + b"\r\n--l1-test-bound" + rng.randbytes(500) + b"\r\n-" + b"\r\n"
    found, stored = parse(form(("note", None, b"hello"), ("file", "a.bin", data)), step)
    assert stored == data
    assert found.filename == "a.bin" and found.fields == {"note": "hello"}


def test_a_preamble_and_transport_padding_are_allowed():
    body = form(("file", "a.bin", b"payload"), preamble=b"ignored preamble\r\n")
    body = body.replace(BOUNDARY + b"\r\n", BOUNDARY + b"  \r\n", 1)
    assert parse(body)[1] == b"payload"


def test_only_the_first_file_part_named_file_is_stored():
    found, stored = parse(form(("file", "a.bin", b"first"), ("file", "b.bin", b"second"), ("other", "c.bin", b"x")))
    assert stored == b"first" and found.filename == "a.bin"


def test_an_empty_part_without_the_crlf_before_its_boundary_is_accepted():
    body = (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="e.bin"\r\n\r\n'
            b"--" + BOUNDARY + b"--\r\n")
    found, stored = parse(body)
    assert found.found_file and stored == b""


@pytest.mark.parametrize(("body", "message"), [
    (form(("note", None, b"x")), "no file part named 'file'"),
    (form(("file", "a.bin", b"data"))[:-20], "ends before the closing boundary"),
    (b"no boundary anywhere", "ends inside the preamble"),
    (b"--" + BOUNDARY + b"\r\nno colon here\r\n\r\nx\r\n--" + BOUNDARY + b"--", "has no ':'"),
    (b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n--" + BOUNDARY + b"--", "no Content-Disposition"),
    (b"--" + BOUNDARY + b"junk\r\n", "unexpected bytes after a boundary"),
])
def test_malformed_bodies_are_refused_with_the_reason(body, message):
    with pytest.raises(BadRequest, match=message):
        parse(body, 7)


def test_limits_on_parts_headers_and_fields():
    many = form(*[(f"f{i}", None, b"x") for i in range(multipart.MAX_PARTS + 1)])
    with pytest.raises(PayloadTooLarge, match="more than"):
        parse(many)
    huge_header = b"--" + BOUNDARY + b"\r\nX-Pad: " + b"a" * (multipart.MAX_HEADER_BYTES + 10)
    with pytest.raises(PayloadTooLarge, match="part header"):
        parse(huge_header, 1000)
    big_field = form(("note", None, b"y" * (multipart.MAX_FIELD_BYTES + 1)), ("file", "a.bin", b"z"))
    with pytest.raises(PayloadTooLarge, match="text fields"):
        parse(big_field)
    with pytest.raises(BadRequest, match="boundary"):
        read_multipart(io.BytesIO(b""), b"b" * 71, Collector())
