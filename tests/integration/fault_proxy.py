"""A small fault-injecting Kafka proxy on loopback for the integration tests.

Clients connect to the proxy (the broker advertises the proxy's address), the proxy
forwards frames to the broker unchanged. While `drop_produce_responses` is above
zero, a Produce response from the broker is swallowed and both connections are
closed: the broker has written the batch but the client never hears of it, so it
retries. That is exactly the case the idempotent producer must survive.

`cut()` is a network partition between the proxy's clients and the broker: every
open proxied connection is closed and, until `heal()`, new ones are closed as soon
as they are accepted (counted in `refused`). The replication tests put one proxy
in front of each broker's replication address to cut a leader off its followers.
"""

from __future__ import annotations

import socket
import struct
import threading


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(sock: socket.socket) -> bytes | None:
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">i", head)
    body = _recv_exact(sock, length)
    return None if body is None else head + body


class FaultProxy:
    PRODUCE = 0

    def __init__(self, listen_port: int, broker_host: str, broker_port: int, drop_every: int = 1):
        self.target = (broker_host, broker_port)
        self.drop_produce_responses = 0
        self.drop_every = drop_every
        self.dropped = 0
        self._produce_responses = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", listen_port))
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._cut = False
        self.refused = 0  # connections closed on arrival while cut
        self._open: set[tuple[socket.socket, socket.socket]] = set()  # (client, upstream) pairs
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Closes every open proxied connection and closes new ones on arrival until `heal()`."""
        with self._lock:
            self._cut = True
            pairs = list(self._open)
            self._open.clear()
        for client, upstream in pairs:
            self._shut(client, upstream)

    def heal(self) -> None:
        """Forwards new connections again (connections closed by `cut()` stay closed)."""
        with self._lock:
            self._cut = False

    @property
    def is_cut(self) -> bool:
        return self._cut

    def _refuse(self, client: socket.socket) -> None:
        with self._lock:
            self.refused += 1
        self._shut(client)

    def close(self) -> None:
        self._closed = True
        self._server.close()
        for s in list(self._sockets):
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._cut:
                self._refuse(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                cut = self._cut  # checked again: cut() may have run while connecting
                if not cut:
                    self._open.add((client, upstream))
            if cut:
                self._shut(upstream)
                self._refuse(client)
                continue
            self._sockets += [client, upstream]
            pending: dict[int, int] = {}  # correlation id -> api key
            threading.Thread(target=self._client_to_broker, args=(client, upstream, pending), daemon=True).start()
            threading.Thread(target=self._broker_to_client, args=(upstream, client, pending), daemon=True).start()

    @staticmethod
    def _shut(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _forget(self, client: socket.socket, upstream: socket.socket) -> None:
        with self._lock:
            self._open.discard((client, upstream))

    def _client_to_broker(self, client, upstream, pending) -> None:
        try:
            while (frame := _read_frame(client)) is not None:
                api_key, _, correlation = struct.unpack(">hhi", frame[4:12])
                pending[correlation] = api_key
                upstream.sendall(frame)
        except OSError:
            pass
        self._forget(client, upstream)
        self._shut(client, upstream)

    def _should_drop(self, api_key: int) -> bool:
        if api_key != self.PRODUCE:
            return False
        with self._lock:
            self._produce_responses += 1
            if self.drop_produce_responses > 0 and self._produce_responses % self.drop_every == 0:
                self.drop_produce_responses -= 1
                self.dropped += 1
                return True
        return False

    def _broker_to_client(self, upstream, client, pending) -> None:
        try:
            while (frame := _read_frame(upstream)) is not None:
                (correlation,) = struct.unpack(">i", frame[4:8])
                if self._should_drop(pending.pop(correlation, -1)):
                    break  # the batch is written, the client never learns it
                client.sendall(frame)
        except OSError:
            pass
        self._forget(client, upstream)
        self._shut(client, upstream)
