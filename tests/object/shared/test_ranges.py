"""Properties of range parsing and multipart framing (``object/shared/ranges.py``); what
Swift answers to particular headers is tested through the cluster in
``tests/object/proxy/test_swift_object_semantics.py``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from soko.object.shared.ranges import Unsatisfiable, multipart_byteranges, parse_range

positions = st.integers(min_value=0, max_value=40)
specs = st.one_of(
    st.tuples(positions, positions).map(lambda r: f"{min(r)}-{max(r)}"),
    positions.map(lambda p: f"{p}-"),
    positions.map(lambda p: f"-{p}"),
)


@settings(max_examples=50, deadline=None)
@given(size=positions, parts=st.lists(specs, min_size=1, max_size=10),
       spaces=st.booleans())
def test_served_ranges_lie_within_the_object(size, parts, spaces):
    header = ("bytes = " if spaces else "bytes=") + (", " if spaces else ",").join(parts)
    try:
        ranges = parse_range(header, size)
    except Unsatisfiable:
        return
    if ranges is None:
        assert size == 0  # only an empty object is served whole for a well-formed header
        return
    assert ranges and all(0 <= start < end <= size for start, end in ranges)


@settings(max_examples=50, deadline=None)
@given(data=st.binary(min_size=1, max_size=64), parts=st.lists(specs, min_size=2, max_size=6))
def test_multipart_body_holds_each_range_and_its_length_is_exact(data, parts):
    try:
        ranges = parse_range("bytes=" + ",".join(parts), len(data))
    except Unsatisfiable:
        return
    content_type, length, chunks = multipart_byteranges(
        ranges, len(data), "text/plain", lambda start, end: [data[start:end]])
    body = b"".join(chunks)
    boundary = content_type.partition(";boundary=")[2].encode()
    assert len(body) == length and body.endswith(b"--" + boundary + b"--")
    pieces = body.split(b"--" + boundary)[1:-1]
    assert [p.split(b"\r\n\r\n", 1)[1][:-2] for p in pieces] == [data[s:e] for s, e in ranges]
