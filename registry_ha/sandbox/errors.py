"""The sandbox's one error type: a message for the operator, no traceback."""


class SandboxError(RuntimeError):
    pass
