"""Local HA sandbox: `deploy-registry-ha.sh local up|down|status` (see README.md, "Local HA sandbox")."""
from registry_ha.sandbox.core import Sandbox, SandboxError

__all__ = ["Sandbox", "SandboxError"]
