"""`deploy-registry-ha.sh local ...`: the program's topology as processes on 127.0.0.1."""
from registry_ha.sandbox.core import Sandbox, SandboxError

__all__ = ["Sandbox", "SandboxError"]
