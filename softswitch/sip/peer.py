"""Where a message came from or goes to: transport plus address."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Peer:
    """A remote SIP endpoint as the transport layer sees it.

    ``connection`` identifies a stream connection (TCP/TLS) so responses can go
    back over the same one (RFC 3261 §18.2.2); it is 0 for UDP.
    """

    transport: str  # "udp" | "tcp" | "tls"
    host: str
    port: int
    connection: int = 0

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"
