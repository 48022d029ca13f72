"""The sandbox's errors: a message for the operator, no traceback."""


class SandboxError(RuntimeError):
    """Something did not run (exit 1)."""


class SandboxUsageError(SandboxError):
    """An argument or a stack config the sandbox cannot run, found before anything starts (exit 2)."""
