"""The sandbox's port plan: every port derived from --port-base, except the LB's (--port).

The defaults (LB 5000, base 25000, so 25000-25099 and 15058) stay below Linux's ephemeral range
(net.ipv4.ip_local_port_range, 32768-60999): an outgoing connection there can leave a TIME_WAIT
that keeps a listener off its port for up to 60 s.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from registry_ha.sandbox.procs import port_free

SPAN = 100  # base .. base+99, plus weed's admin HTTP port at base+58-10000
WEED_ADMIN_OFFSET = 58 - 10000
PORT_BASE_RANGE = (1024 - WEED_ADMIN_OFFSET, 65535 - (SPAN - 1))  # every planned port unprivileged and valid


@dataclass(frozen=True)
class Ports:
    lb: int
    base: int

    def cache(self, index: int) -> int:
        """The index-th cache of `mirrors` (from 0): the first keeps base+0, the others base+60+2i."""
        return self.base if index == 0 else self.base + 60 + 2 * index

    def cache_debug(self, index: int) -> int:
        return self.base + 1 if index == 0 else self.base + 61 + 2 * index

    @property
    def redis(self) -> int:
        return self.base + 2

    @property
    def upstream(self) -> int:
        """The local stand-in for the caches' upstream (not part of the program)."""
        return self.base + 3

    def replica(self, index: int) -> int:  # index from 1
        return self.base + 9 + index

    def replica_debug(self, index: int) -> int:
        return self.base + 29 + index

    @property
    def token(self) -> int:
        """The token server (local up --auth)."""
        return self.base + 90

    @property
    def prometheus(self) -> int:
        """`local up --with-prometheus` (not part of the program's topology: its monitoring)."""
        return self.base + 91

    @property
    def s3(self) -> int:
        return self.base + 50

    def weed(self) -> dict[str, int]:
        b = self.base
        return {
            "s3.port": b + 50,
            "master.port": b + 51,
            "master.port.grpc": b + 52,
            "volume.port": b + 53,
            "volume.port.grpc": b + 54,
            "filer.port": b + 55,
            "filer.port.grpc": b + 56,
            "s3.port.grpc": b + 57,
            # weed's plugin worker dials admin.port + 10000 whatever admin.port.grpc says: match it,
            # keeping the gRPC port in the span and the (UI-less) HTTP port 10000 below it
            "admin.port": b + WEED_ADMIN_OFFSET,
            "admin.port.grpc": b + 58,
            # Prometheus metrics of every weed server: SeaweedFS_s3_request_total counts S3 requests
            "metricsPort": b + 59,
        }

    def planned(self) -> list[int]:
        """Every port derived from the base (the LB's excluded)."""
        return sorted({*range(self.base, self.base + SPAN), *self.weed().values()})


def ephemeral_range() -> tuple[int, int]:
    """Where this kernel takes client ports (Linux's default when /proc does not say)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port_base(low: int = 20000, high: Optional[int] = None) -> int:
    """A --port-base whose planned ports a server can listen on now, all below the ephemeral range:
    a free port inside it can still be taken by any client socket before the server binds it."""
    high = ephemeral_range()[0] - SPAN if high is None else high
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))
    for _ in range(200):
        base = rng.randrange(max(low, PORT_BASE_RANGE[0]), min(high, PORT_BASE_RANGE[1]), 10)
        if all(port_free(p) for p in Ports(lb=0, base=base).planned()):
            return base
    raise RuntimeError("no free port range found")


_HANDED_OUT: set[int] = set()


def free_port(low: int = 2000, high: int = 10000) -> int:
    """One port a server can listen on now, below both the ephemeral range and the bases'
    spans (whose lowest port, weed's admin HTTP, is base-9942 >= 10058)."""
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))
    for _ in range(500):
        port = rng.randrange(low, high)
        if port not in _HANDED_OUT and port_free(port):
            _HANDED_OUT.add(port)  # two calls before either binds never get the same port
            return port
    raise RuntimeError(f"no free port found in {low}-{high - 1}")
