"""The sandbox's port plan: every port derived from --port-base, except the LB's (--port)."""
from __future__ import annotations

from dataclasses import dataclass

SPAN = 100  # base .. base+99, plus weed's admin gRPC at base+58+10000


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
            "admin.port": b + 58,
            # weed's plugin worker dials admin.port + 10000 whatever admin.port.grpc says: match it
            "admin.port.grpc": b + 58 + 10000,
        }
