"""Addresses of services outside the cluster that tenants may reach."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class DatabaseEndpoint:
    """The shared PostgreSQL as tenants see it: where to connect, and the network to allow."""

    host: str
    port: int
    cidr: str

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("database host is empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"database port {self.port} is not a TCP port")
        ipaddress.ip_network(self.cidr)

    @classmethod
    def parse(cls, endpoint: str, cidr: str | None = None) -> DatabaseEndpoint:
        """From `host:port`; without `cidr`, the host must be an IP address (allowed as /32)."""
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"database endpoint {endpoint!r} is not host:port")
        host = host.strip("[]")
        if cidr is None:
            try:
                cidr = str(ipaddress.ip_network(host))
            except ValueError:
                raise ValueError(
                    f"database host {host!r} is a name, not an address; give its network as databaseCidr"
                ) from None
        return cls(host=host, port=int(port), cidr=cidr)
