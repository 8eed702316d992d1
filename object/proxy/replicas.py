"""How the proxy talks to the replicas of an account, container or object.

Placement comes only from the ring. Writes go to every primary at once and succeed on a
quorum; a primary that cannot be reached, or answers 5xx/507, is replaced by the next
handoff (for a body the proxy still holds: bodies up to ``REPLAY_LIMIT`` are kept so a node
that fails after the body can be replaced too). Reads try primaries, then handoffs only
if a primary failed; an object read hears a quorum of replicas (one streams, the others
answer a HEAD) and serves the newest version they know, a newer tombstone included.

A read fails over to the next node on a connect error, a timeout, a 5xx or 507, and on a
body that breaks off or fails its MD5 before the client got a byte: the first chunk is read
before a node is chosen (a small object is then whole and checked). Past that point the
stream reads one chunk ahead, so the last chunk leaves only after the MD5 matched. A body
that breaks off (a node cuts it before a block that fails its checksum, or dies) is
continued from another replica with a Range from the first missing byte; if none can, or
the MD5 mismatches, ``BodyError`` is raised and the client's connection is cut: a short or
corrupt body must never look complete.

Within one request a host that failed to connect or timed out is not asked again (its
other devices are no better), and error-limited nodes (``nodeclient``) are skipped, but as
a last resort they are still tried: a node that just came back may still be limited, and
skipping it must not be what fails a request.

Parallelism without threads: each request is sent to every node first, then the answers
are read in turn, so the nodes work at the same time.
"""

from __future__ import annotations

import functools
import http.client
import itertools
import logging
import random
import time
from collections.abc import Iterable, Iterator

from soko.object.proxy.node_answers import (
    BodyError,
    NodeResponse,
    StreamedResponse,
    lower_headers,
)
from soko.object.shared.nodeclient import (
    ConnectionPool,
    ErrorLimited,
    NodeConnection,
    backend_path,
    is_node_error,
)
from soko.object.shared.timestamps import InvalidTimestamp, Timestamp

log = logging.getLogger(__name__)

REPLAY_LIMIT = 1024 * 1024
FAILED = 503  # the status recorded for a node that could not be reached or answered


def quorum_size(replicas: int) -> int:
    return replicas // 2 + 1


def best_status(responses: list[NodeResponse], replicas: int) -> int:
    """Swift's answer for a set of replica answers: the status class a quorum agrees on."""
    quorum = quorum_size(replicas)
    for low in (200, 400, 300):
        matching = [r.status for r in responses if low <= r.status < low + 100]
        if len(matching) >= quorum:
            return max(set(matching), key=matching.count)
    return FAILED


def host(node: dict) -> tuple[str, int]:
    return node["ip"], node["port"]


class Spares:
    """Per request: who else to ask. Handoffs on hosts not yet failed in this request, then
    (``forcing``) the nodes skipped as error-limited."""

    def __init__(self, handoffs: Iterator[dict]):
        self.handoffs = handoffs
        self.limited: list[dict] = []
        self.dead: set[tuple[str, int]] = set()
        self.forcing = False

    def next(self) -> dict | None:
        for node in self.handoffs:
            if host(node) not in self.dead:
                return node
        self.forcing = True
        while self.limited:
            node = self.limited.pop(0)
            if host(node) not in self.dead:
                return node
        return None


class Replicas:
    """One ring's placement plus the pool: the proxy's view of a kind of data."""

    def __init__(self, kind: str, ring, pool: ConnectionPool):
        self.kind = kind
        self.ring = ring
        self.pool = pool

    @property
    def replica_count(self) -> int:
        return int(self.ring.replica_count)

    def nodes(self, account: str, container: str | None = None,
              obj: str | None = None) -> tuple[int, list[dict]]:
        return self.ring.get_nodes(account, container, obj)

    def path(self, node: dict, part: int, names: tuple) -> str:
        return backend_path(self.kind, node, part, *names)

    def open(self, node: dict, method: str, path: str, headers: dict[str, str],
             chunked: bool = False, spares: Spares | None = None) -> NodeConnection | None:
        """Connects and sends the request line and headers; None if the node is unreachable
        (noted in ``spares``: as dead, or as error-limited and so left for last)."""
        try:
            conn, _ = self.pool.acquire(node["ip"], node["port"],
                                        force=spares is not None and spares.forcing)
            conn.putrequest(method, path, skip_accept_encoding=True)
            for key, value in headers.items():
                conn.putheader(key, value)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            return conn
        except ErrorLimited:
            if spares is not None:
                spares.limited.append(node)
            return None
        except (OSError, http.client.HTTPException) as exc:
            if spares is not None:
                spares.dead.add(host(node))
            log.warning("%s %s: %s:%s unreachable: %r", method, path, node["ip"], node["port"], exc)
            return None

    def finish(self, node: dict, conn: NodeConnection | None,
               deadline: float | None = None) -> NodeResponse:
        """Reads a write's answer; ``deadline`` (monotonic) caps the wait instead of the node
        timeout, so replicas sent at once time out together, not one after the other."""
        if conn is None:
            return NodeResponse(node, FAILED, {})
        try:
            if deadline is not None:
                conn.sock.settimeout(max(0.01, deadline - time.monotonic()))
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            return self.failed(node, conn, exc)
        if deadline is not None and conn.sock is not None:
            conn.sock.settimeout(self.pool.node_timeout)
        self.pool.release(conn, response)
        return NodeResponse(node, response.status, lower_headers(response), body)

    def failed(self, node: dict, conn: NodeConnection, exc: BaseException) -> NodeResponse:
        """Drops the connection; a timeout or refusal counts toward error-limiting the node."""
        conn.close()
        log.warning("%s:%s failed: %r", node["ip"], node["port"], exc)
        if is_node_error(exc):
            self.pool.error(node["ip"], node["port"])
            return NodeResponse(node, FAILED, {}, unreachable=True)
        return NodeResponse(node, FAILED, {})

    def write(self, part: int, primaries: list[dict], method: str, names: tuple,
              headers_for, body: Iterable[bytes] | bytes = b"",
              content_length: int | None = 0) -> list[NodeResponse]:
        """Sends one write to every primary, replacing failed ones with handoffs.

        ``headers_for(node, index)`` gives each node's headers (the replica index picks the
        listing replica it updates). ``body`` is bytes or an iterable of chunks; with
        ``content_length`` None it goes chunked.
        """
        spares = Spares(self.ring.handoff_nodes(part))
        chunked = content_length is None

        def connect(node: dict, index: int) -> NodeConnection | None:
            return self.open(node, method, self.path(node, part, names),
                             headers_for(node, index), chunked, spares)

        targets: list[tuple[dict, int, NodeConnection | None]] = []
        for index, node in enumerate(primaries):
            conn = connect(node, index)
            while conn is None:
                node = spares.next()
                if node is None:
                    break
                conn = connect(node, index)
            targets.append((node, index, conn))
        replay: list[bytes] | None = []
        replay_size = 0
        chunks = [body] if isinstance(body, bytes) else body
        try:
            for chunk in chunks:
                if not chunk:
                    continue
                if replay is not None:
                    replay.append(chunk)
                    replay_size += len(chunk)
                    if replay_size > REPLAY_LIMIT:
                        replay = None
                targets = [(n, i, self.send(c, chunk, chunked)) for n, i, c in targets]
        except BaseException:
            # The client's body failed: the nodes must see the connection end, not commit.
            for _, _, conn in targets:
                if conn is not None:
                    conn.close()
            raise
        if chunked:
            targets = [(n, i, self.send(c, b"", True)) for n, i, c in targets]
        responses = []
        deadline = time.monotonic() + self.pool.node_timeout
        for node, index, conn in targets:
            if conn is not None and host(node) in spares.dead:
                conn.close()  # its host just timed out on another replica of this write
                conn = None
            response = self.finish(node, conn, deadline)
            while response.failed and replay is not None:
                if response.unreachable:
                    spares.dead.add(host(node))
                node = spares.next()
                if node is None:
                    break
                conn = connect(node, index)
                for chunk in replay:
                    conn = self.send(conn, chunk, chunked)
                if chunked:
                    conn = self.send(conn, b"", True)
                response = self.finish(node, conn)
            responses.append(response)
        return responses

    def send(self, conn: NodeConnection | None, chunk: bytes, chunked: bool):
        """Sends one chunk (an empty one ends a chunked body); a node that fails is dropped."""
        if conn is None:
            return None
        try:
            if chunked:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                conn.send(chunk)
            return conn
        except OSError as exc:
            log.warning("sending to %s:%s failed: %r", conn.host, conn.port, exc)
            conn.close()
            return None

    def read_nodes(self, part: int, primaries: list[dict]) -> Iterator[dict]:
        """Primaries in random order (spreads reads), then handoffs."""
        shuffled = random.sample(primaries, len(primaries))
        yield from shuffled
        yield from self.ring.handoff_nodes(part)

    def read(self, method: str, names: tuple, headers: dict[str, str], *,
             newest: bool = False, query: str = "") -> StreamedResponse | NodeResponse:
        """The newest state a read quorum of replicas knows (with ``newest``: every primary).

        One node gets the request, the others of the quorum a HEAD at the same time. A read
        quorum and a write quorum share a node, so the last acknowledged write is among the
        answers: an object tombstone (a 404 with ``X-Backend-Timestamp``) newer than a
        replica's data wins (a node that was down during a DELETE must not bring the object
        back: Swift drops only a source older than a tombstone it already saw), and a replica
        with newer data or metadata is read instead of a stale one. Accounts and containers
        take the first good answer, as Swift does.
        """
        part, primaries = self.nodes(*names)
        want = len(primaries) if newest else (
            quorum_size(len(primaries)) if self.kind == "object" else 1)
        spares = Spares(iter(()))
        failures = heard = 0
        source: StreamedResponse | NodeResponse | None = None  # a full answer to serve
        views: list[StreamedResponse | NodeResponse] = []  # every answer, full or HEAD

        def nodes() -> Iterator[dict]:
            for tried, node in enumerate(self.read_nodes(part, primaries)):
                if tried >= len(primaries) and (failures == 0 or tried >= 2 * len(primaries)):
                    break
                if host(node) not in spares.dead:
                    yield node
            yield from iter(spares.next, None)  # the error-limited, as a last resort

        def send(node: dict, whole: bool) -> tuple[str, str, NodeConnection | None]:
            """The request (``whole``) or a HEAD that only says which version the node has."""
            verb = method if whole else "HEAD"
            path = self.path(node, part, names) + (f"?{query}" if query and whole else "")
            confirm = {"X-Trans-Id": headers.get("X-Trans-Id", "")}
            return verb, path, self.open(node, verb, path, headers if whole else confirm,
                                         spares=spares)

        def full(node: dict) -> StreamedResponse | NodeResponse:
            return self.receive(node, *send(node, True), spares)

        candidates = nodes()
        while heard < want or not any(is_good(v) for v in views):
            round_ = list(itertools.islice(candidates, max(1, want - heard)))
            if not round_:
                break
            # Sent all at once, read in turn: the nodes work at the same time.
            sent = [(node, i == 0 and not is_good(source)) for i, node in enumerate(round_)]
            sent = [(node, whole, *send(node, whole)) for node, whole in sent]
            for node, whole, verb, path, conn in sent:
                answer = self.receive(node, verb, path, conn, spares)
                if answer.status >= 500 or answer.status == 507:
                    failures += 1
                    continue
                if answer.status == 404 and node not in primaries and not answer.timestamp.ticks:
                    continue  # a handoff that never had it says nothing (as Swift)
                heard += 1
                views.append(answer)
                if whole and is_good(answer):
                    source = answer
        answer = self.settle(source, views, full)
        if isinstance(answer, StreamedResponse) and not newest:
            # A body cut short (a bad block, a crash) continues from a replica of the same
            # version: the others that answered, then the untried.
            others = [v.node for v in views if v is not answer and is_good(v)]
            answer.resume = functools.partial(self.read_rest, itertools.chain(others, candidates),
                                              part, names, headers)
        return answer

    def settle(self, source, views, full) -> StreamedResponse | NodeResponse:
        """The answer the views agree on: the newest tombstone, or the newest replica's answer
        (fetched from it if only its HEAD was seen)."""
        good = [v for v in views if is_good(v)]
        best = max(good, key=lambda v: (version(v), v is source), default=None)
        tombstones = [v for v in views if v.status == 404] if self.kind == "object" else []
        tombstone = max(tombstones, key=lambda v: v.timestamp, default=None)
        answer = source
        if best is None or (tombstone is not None and tombstone.timestamp > best.timestamp):
            answer = tombstone or (views[0] if views else NodeResponse({}, FAILED, {}))
        elif best is not source:
            fetched = full(best.node)  # a stale replica answered first: read the newest
            if is_good(fetched) or source is None:
                answer = fetched
        for view in views:
            if view is not answer and isinstance(view, StreamedResponse):
                view.close()
        return answer

    def read_rest(self, nodes: Iterator[dict], part: int, names: tuple,
                  headers: dict[str, str], start: int, end: int, etag: str):
        """Bytes ``start``-``end`` of the object whose ETag is ``etag`` from the next of
        ``nodes`` that has them: (connection, response, node), or None."""
        headers = {k: v for k, v in headers.items()
                   if k.lower() != "range" and not k.lower().startswith("if-")}
        headers.update({"Range": f"bytes={start}-{end}", "If-Match": etag})
        for node in nodes:
            conn = self.open(node, "GET", self.path(node, part, names), headers)
            if conn is None:
                continue
            try:
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self.failed(node, conn, exc)
                continue
            if response.status == 206 and (response.getheader("Content-Range") or "") \
                    .startswith(f"bytes {start}-{end}/"):
                return conn, response, node
            conn.close()
        return None

    def receive(self, node: dict, method: str, path: str, conn: NodeConnection | None,
                spares: Spares) -> StreamedResponse | NodeResponse:
        """A request's answer; a GET's 2xx body is left unread for streaming."""
        if conn is None:
            return NodeResponse(node, FAILED, {})
        try:
            response = conn.getresponse()
            if response.status // 100 == 2 and method == "GET":
                return StreamedResponse(self.pool, conn, response, node)
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            answer = self.failed(node, conn, exc)
            if answer.unreachable:
                spares.dead.add(host(node))
            return answer
        except BodyError as exc:
            conn.close()
            log.warning("%s %s: %s; trying another node", method, path, exc)
            return NodeResponse(node, FAILED, {})
        self.pool.release(conn, response)
        return NodeResponse(node, response.status, lower_headers(response), body)


def is_good(answer) -> bool:
    """An answer about an existing object (2xx, or 304/412/416 from its preconditions)."""
    return answer is not None and answer.status != 404 and not (
        answer.status >= 500 or answer.status == 507)


def version(answer) -> tuple[Timestamp, Timestamp]:
    """How new a replica's copy is: its data, then its metadata (a POST's ``.meta``)."""
    try:
        meta = Timestamp.parse(answer.headers.get("x-backend-meta-timestamp"))
    except InvalidTimestamp:
        meta = Timestamp(0)
    return answer.timestamp, meta
