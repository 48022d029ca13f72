"""Redis for the sandbox: the program's cache semantics (no persistence, allkeys-lru, maxmemory)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from registry_ha.sandbox import procs
from registry_ha.sandbox.secrets import write_private

if TYPE_CHECKING:
    from registry_ha.sandbox.core import Sandbox


def conf(sb: "Sandbox") -> str:
    return "\n".join(
        [
            "bind 127.0.0.1",
            f"port {sb.ports.redis}",
            "protected-mode yes",
            "daemonize no",
            f"dir {sb.state_dir / 'redis'}",
            'save ""',
            "appendonly no",
            f"requirepass {sb.secrets()['redis_password']}",
            f"maxmemory {sb.settings.redis.max_memory}",
            "maxmemory-policy allkeys-lru",
            "",
        ]
    )


def write_config(sb: "Sandbox") -> None:
    (sb.state_dir / "redis").mkdir(exist_ok=True)
    write_private(sb.config_dir / "redis.conf", conf(sb))


def argv(sb: "Sandbox", name: str, binaries: dict[str, str]) -> list[str]:
    return [binaries["redis-server"], str(sb.config_dir / "redis.conf")]


def healthy(sb: "Sandbox", name: str) -> bool:
    return procs.redis_ping(sb.components[name].address, sb.secrets()["redis_password"])
