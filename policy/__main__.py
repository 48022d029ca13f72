"""registry-ha CrossGuard policy pack: `pulumi preview --policy-pack policy`.

Every policy is mandatory. The checks are plain functions in policies.py (tested there);
never import this file from a test: constructing a PolicyPack starts a gRPC server and
blocks forever.
"""
import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy, StackValidationPolicy

sys.path.insert(0, str(Path(__file__).resolve().parent))  # however the analyzer host starts us
from policies import RESOURCE_VALIDATORS, STACK_VALIDATORS  # noqa: E402

PolicyPack(
    name="registry-ha",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        *(
            ResourceValidationPolicy(name=name, description=description, validate=validate)
            for name, (description, validate) in RESOURCE_VALIDATORS.items()
        ),
        *(
            StackValidationPolicy(name=name, description=description, validate=validate)
            for name, (description, validate) in STACK_VALIDATORS.items()
        ),
    ],
)
