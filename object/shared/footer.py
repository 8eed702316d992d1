"""The body footer of a proxy → storage node PUT: the object's MD5 is computed once, by the
proxy, instead of once per replica.

Swift's API makes the MD5 of every object its ETag. Each replica hashing its copy costs
three MD5s per PUT, the largest CPU cost of a large PUT here (measured with perf on the
storage nodes during 64 MiB PUTs: 54 % of their CPU in libcrypto's MD5, 95 ms per 64 MiB).
So the proxy hashes the body as it streams and sends, after the last body byte, a
fixed-size footer: the MD5 and an xxh3-128 of the body. A node hashes what it received with
xxh3 only (3 ms per 64 MiB) and commits only when that matches the footer: the bytes on
disk are exactly the bytes the MD5 was computed over, so the stored ETag is their MD5.

On the wire: the request carries ``X-Backend-Body-Footer: md5+xxh3-128`` and its
Content-Length (when there is one) counts the 32 footer bytes. A PUT without that header
(a replicator's, a test's) is hashed with MD5 on the node as before. Proxies and storage
nodes of one release speak the same protocol; a node that did not know the header would
store the footer as part of the body, so nodes are upgraded before proxies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import xxhash

FOOTER_HEADER = "X-Backend-Body-Footer"
FOOTER_KIND = "md5+xxh3-128"
FOOTER_SIZE = 32  # 16 bytes MD5 digest + 16 bytes xxh3-128 digest


class FooterMismatch(Exception):
    """The body a node received is not the one the proxy hashed (or has no footer)."""


class FooterBody:
    """The proxy's side: a body's chunks, then the footer; ``etag`` once they are sent.

    The MD5 is half the proxy's CPU on a large PUT (py-spy: 47 %) and was on the request's
    one thread between reading a chunk and sending it to the replicas. From a body's second
    chunk on, a chunk is hashed in a helper thread while it is sent and the next one read
    (hashlib and xxhash let go of the GIL on large inputs): the two cores share the work.
    A body of one chunk (most PUTs) is hashed inline, with no thread.
    """

    def __init__(self, chunks: Iterable[bytes]):
        self.chunks = chunks
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.xxh3 = xxhash.xxh3_128()

    def hash(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        self.xxh3.update(chunk)

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self.chunks)
        first = next(chunks, None)
        if first is not None:
            self.hash(first)
            yield first
            second = next(chunks, None)
            if second is not None:
                with ThreadPoolExecutor(1, thread_name_prefix="body-md5") as hasher:
                    hashed = hasher.submit(self.hash, second)
                    yield second
                    for chunk in chunks:
                        hashed.result()  # in order, and a chunk at a time: bounded memory
                        hashed = hasher.submit(self.hash, chunk)
                        yield chunk
                    hashed.result()
        yield self.md5.digest() + self.xxh3.digest()

    @property
    def etag(self) -> str:
        return self.md5.hexdigest()


class FooterReader:
    """The node's side: yields the body without its footer; ``etag`` checks and returns it."""

    def __init__(self, chunks: Iterable[bytes]):
        self.chunks = chunks
        self.xxh3 = xxhash.xxh3_128()
        self.held = b""  # the last FOOTER_SIZE bytes seen so far: maybe the footer

    def __iter__(self) -> Iterator[bytes | memoryview]:
        for chunk in self.chunks:
            if len(chunk) >= FOOTER_SIZE:
                body, self.held, ready = memoryview(chunk)[:-FOOTER_SIZE], \
                    chunk[-FOOTER_SIZE:], self.held
            else:
                joined = self.held + chunk
                ready, body, self.held = b"", joined[:-FOOTER_SIZE], joined[-FOOTER_SIZE:]
            for part in (ready, body):
                if part:
                    self.xxh3.update(part)
                    yield part

    @property
    def etag(self) -> str:
        """The proxy's MD5 of the body; raises ``FooterMismatch`` if the body differs."""
        if len(self.held) != FOOTER_SIZE:
            raise FooterMismatch("the body ended before its footer")
        if self.held[16:] != self.xxh3.digest():
            raise FooterMismatch("the body does not match its footer's checksum")
        return self.held[:16].hex()
