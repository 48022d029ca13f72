"""Set up the Pulumi mock engine for component tests (preview=False: every apply runs)."""
from __future__ import annotations

import pulumi
from pulumi.runtime import settings as runtime_settings

from registry_ha.mock_engine import RecordingMonitor, RegistryMocks
from registry_ha.settings import PROJECT


def use_mocks(stack: str = "staging") -> RecordingMonitor:
    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_all_config({}, [])
    mocks = RegistryMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    return monitor


def registered(monitor: RecordingMonitor, *resources: pulumi.Resource) -> pulumi.Output:
    """Output of the manifests (camelCase inputs, secrets unwrapped) the engine received for `resources`.

    It resolves once every resource is registered, so a check applied to it runs inside the
    `@pulumi.runtime.test` and its failure fails the test.
    """
    from registry_ha.mock_engine import normalize, unwrap_secrets

    def lookup(urns):
        by_urn = {r.urn: r for r in monitor.recorded}
        return [normalize(unwrap_secrets(by_urn[urn].inputs)) for urn in urns]

    return pulumi.Output.all(*[r.urn for r in resources]).apply(lookup)


def settings_for(stack: str = "staging", **values):
    """Settings of a shipped stack (its Pulumi.<stack>.yaml), with `values` set on top."""
    from registry_ha.settings import load_settings
    from registry_ha.stacks import read_stack_file

    config, secret_keys = read_stack_file(stack)
    config.update({f"{PROJECT}:{k}": v for k, v in values.items()})
    return load_settings(config, stack, secret_keys, aws_region=config.get("aws:region"))
