"""`scripts/deploy-registry-ha.sh` entry point: one dispatcher, one module per command group."""
from __future__ import annotations

import importlib
import os
import sys

# command -> "module:function"; the function takes the remaining arguments and returns the exit code
COMMANDS = {
    "deploy": "registry_ha.pulumi_ops:deploy_main",
    "preview": "registry_ha.pulumi_ops:preview_main",
    "rollback": "registry_ha.pulumi_ops:rollback_main",
    "history": "registry_ha.pulumi_ops:history_main",
    "render": "registry_ha.render:main",
    "gc": "registry_ha.gc_ops:gc_main",
    "destroy": "registry_ha.destroy_ops:destroy_main",
    "restore": "registry_ha.restore:main",
    "local": "registry_ha.sandbox.cli:main",
}

USAGE = """\
usage: deploy-registry-ha.sh COMMAND [ARGS]

  deploy   STACK [--yes]                     preview, confirm, pulumi up, print addresses
  preview  STACK                             pulumi preview --diff (with the policy pack)
  rollback STACK [--to N]                    re-deploy the code of an earlier successful update
  history  STACK                             the stack's update history
  render   STACK [--out DIR] [--show-secrets]
                                             manifests and AWS inputs, offline (no cloud, no CLI)
  gc       STACK [--dry-run] [--delete-untagged] [--yes]
                                             read-only, garbage-collect Job, FLUSHDB, read-write
  destroy  STACK [--yes]                     pulumi destroy; the bucket and its key stay (retainBucket)
  restore  STACK REPO:TAG --before TIME [--yes]
                                             bring back a deleted tag and manifest from S3 versions
  local    up|down|status|gc|restart [...]   the HA topology as local processes on 127.0.0.1

STACK is any stack with a Pulumi.<STACK>.yaml (staging, production, ...).
Exit codes: 0 done, 1 a runtime failure, 2 bad arguments or bad stack config.
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    target = COMMANDS.get(command)
    if target is None:
        sys.stderr.write(f"error: unknown command {command!r}; allowed: {', '.join(COMMANDS)}\n\n{USAGE}")
        return 2
    module_name, function_name = target.split(":")
    try:
        code = getattr(importlib.import_module(module_name), function_name)(rest)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # `... status --json | head`: the reader left; not an error, and no traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
