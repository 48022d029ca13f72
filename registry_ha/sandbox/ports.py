"""The sandbox's port plan: every port derived from --port-base, except the LB's (--port)."""
from __future__ import annotations

from dataclasses import dataclass

SPAN = 100  # base .. base+99, plus weed's admin gRPC at base+58+10000


@dataclass(frozen=True)
class Ports:
    lb: int
    base: int

    @property
    def mirror(self) -> int:
        return self.base

    @property
    def mirror_debug(self) -> int:
        return self.base + 1

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
            "admin.port": b + 58,
            # weed's plugin worker dials admin.port + 10000 whatever admin.port.grpc says: match it
            "admin.port.grpc": b + 58 + 10000,
        }
