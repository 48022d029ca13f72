"""Run in a fresh interpreter by benchmark 1: `python -m bench.evalprobe <stack|baseline>`.

Prints one JSON line: seconds spent importing, seconds spent evaluating, of those the CPU seconds the
mocks spent standing in for providers (pulumi-tls's RSA key generation: in a real preview the provider
plugin does that, not the program), resources declared.
`baseline` imports the same SDKs the program uses and declares one resource under the same mocks.
"""
from __future__ import annotations

import json
import sys
import time


def baseline() -> int:
    import pulumi
    import pulumi_aws as aws
    import pulumi_kubernetes as k8s  # noqa: F401  (the SDKs the program imports)
    import pulumi_random as random  # noqa: F401
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    from registry_ha.mock_engine import RegistryMocks
    from registry_ha.settings import PROJECT

    mocks = RegistryMocks()
    monitor = MockMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="baseline", preview=False, monitor=monitor)

    def evaluate():
        bucket = aws.s3.Bucket("one")
        _sync_await(bucket.arn.future())

    _sync_await(run_pulumi_func(evaluate))
    return len(monitor.resources)


def main(argv: list[str]) -> int:
    target = argv[0]
    t0 = time.perf_counter()
    if target == "baseline":
        import pulumi  # noqa: F401
        import pulumi_aws  # noqa: F401
        import pulumi_kubernetes  # noqa: F401
        import pulumi_random  # noqa: F401

        t1 = time.perf_counter()
        count = baseline()
        provider_s = 0.0
    else:
        from registry_ha.mock_engine import run_program

        t1 = time.perf_counter()
        run = run_program(target)
        count, provider_s = len(run.resources), run.provider_seconds
    t2 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "eval_s": t2 - t1, "provider_s": provider_s, "resources": count}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
