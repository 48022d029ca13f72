"""Local HA sandbox: `deploy-registry-ha.sh local up|down|status` (see docs/sandbox.md)."""
from registry_ha.sandbox.core import Sandbox, SandboxError

__all__ = ["Sandbox", "SandboxError"]
