"""One HTTP exchange as raw bytes on a socket: what no client library would send (NULs,
lying lengths, half-closed bodies), and the answer split into status, head and body."""

from __future__ import annotations

import socket


def exchange(port: int, data: bytes, *, timeout: float,
             half_close: bool = False) -> tuple[int, bytes, bytes]:
    """Send `data` byte for byte to 127.0.0.1:`port`, read until the server closes, and
    return (status, head, body). `half_close` ends the sending side after `data`, as a
    client that sends less than its Content-Length does."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    head, _, body = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), head, body
