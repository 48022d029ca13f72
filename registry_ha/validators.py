"""Pure checks and unit conversions behind the settings keys (no Pulumi import).

Each `is_*`/`*_problem` function answers for one value; the key table in
`registry_ha.config_keys` attaches them to keys with the text a user sees.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Optional

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$")
QUANTITY_CPU = re.compile(r"^(\d+m|\d+(\.\d+)?)$")
QUANTITY_MEM = re.compile(r"^\d+(Ki|Mi|Gi|Ti|K|M|G|T)?$")
REDIS_MEM = re.compile(r"^\d+(b|kb|mb|gb)?$", re.IGNORECASE)
DURATION = re.compile(r"^(\d+(ns|us|ms|s|m|h))+$")
IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+([._/-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
# A key ARN, not an alias: an IAM grant on an alias ARN does not allow using the key, and the bucket
# policy's key-id condition compares the key ARN.
KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{12}:key/[A-Za-z0-9-]+$")
AUTH_USER = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+$-]{0,254}$")  # no whitespace, no ':' (basic auth)
HTTP_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d+)?(/.*)?$")
REGISTRY_ROOT_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d+)?/?$")
# Pulumi allows more, but the stack name goes into the bucket prefix (S3 allows 37 characters for
# `neural-hive-registry-<stack>-`), label values and the IAM user name.
STACK_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")
STACK_NAME_RULE = "1-15 lowercase letters, digits and '-' (it names the bucket prefix, labels and the IAM user)"

CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_FIELD = re.compile(r"^(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/\d+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/\d+)?)*$")
# minute, hour, day of month, month, day of week: (lowest, highest) for numeric values
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES = (set(), set(), set(), {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"},
               {"sun", "mon", "tue", "wed", "thu", "fri", "sat"})

_MEM_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_REDIS_UNITS = {"": 1, "b": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30}
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def memory_bytes(quantity: str) -> int:
    """Bytes of a Kubernetes memory quantity that matched QUANTITY_MEM."""
    number, unit = re.match(r"^(\d+)(\D*)$", quantity).groups()
    return int(number) * _MEM_UNITS[unit]


def redis_bytes(size: str) -> int:
    """Bytes of a Redis size that matched REDIS_MEM (kb/mb/gb are powers of 1024 in redis.conf)."""
    number, unit = re.match(r"^(\d+)(\D*)$", size).groups()
    return int(number) * _REDIS_UNITS[unit.lower()]


def duration_seconds(duration: str) -> float:
    """Seconds of a Go duration that matched DURATION."""
    return sum(int(n) * _DURATION_UNITS[u] for n, u in re.findall(r"(\d+)(ns|us|ms|s|m|h)", duration))


def is_hostname(value: str) -> bool:
    if not value or len(value) > 253 or value.endswith("."):
        return False
    labels = value.split(".")
    return all(HOST_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def is_dns_label(value: str) -> bool:
    return bool(DNS_LABEL.match(value or ""))


def is_region(value: str) -> bool:
    return bool(REGION.match(value or ""))


def is_stack_name(value: str) -> bool:
    return bool(STACK_NAME.match(value or ""))


def is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=True)
        return True
    except ValueError:
        return False


def bucket_name_problem(name: str) -> Optional[str]:
    """What S3 rejects in a bucket name (general purpose buckets), or None."""
    if not BUCKET.match(name):
        return "3-63 characters of a-z, 0-9, '.', '-', starting and ending with a letter or digit"
    if ".." in name or ".-" in name or "-." in name:
        return "no adjacent periods or period next to a hyphen"
    try:
        ipaddress.IPv4Address(name)
        return "not formatted as an IP address"
    except ValueError:
        pass
    for prefix in ("xn--", "sthree-", "amzn-s3-demo-"):
        if name.startswith(prefix):
            return f"must not start with {prefix!r}"
    for suffix in ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"):
        if name.endswith(suffix):
            return f"must not end with {suffix!r}"
    return None


def image_schema(image: str) -> Optional[str]:
    """The Distribution config schema an image speaks, told from its tag, or None."""
    match = IMAGE.match(image)
    if not match:
        return None
    tag = match.group("tag") or ""
    version = re.match(r"^v?(\d+)(\.(\d+))?", tag)
    if not version:
        return None
    major, minor = int(version.group(1)), int(version.group(3) or -1)
    if major == 3:
        return "v3"
    if major == 2 and minor >= 6:
        return "v2"
    return None


def image_version(image: str) -> Optional[str]:
    """The version in an image tag (registry:3.1.1 -> 3.1.1), or None for a digest-only reference."""
    match = IMAGE.match(image)
    if not match or not match.group("tag"):
        return None
    version = re.match(r"^v?(\d+\.\d+(\.\d+)?)", match.group("tag"))
    return version.group(1) if version else None


def image_is_pinned(image: str) -> bool:
    match = IMAGE.match(image)
    if not match:
        return False
    return bool(match.group("digest")) or (bool(match.group("tag")) and match.group("tag") != "latest")


def is_cron_schedule(value: str) -> bool:
    """A Kubernetes CronJob schedule: five fields (numbers, ranges, steps, lists, month/day names) or a
    macro such as @daily. TZ=/CRON_TZ= prefixes are refused (Kubernetes wants spec.timeZone)."""
    text = value.strip()
    if text.lower() in CRON_MACROS:
        return True
    fields = text.split()
    if len(fields) != 5:
        return False
    for field, (low, high), names in zip(fields, _CRON_RANGES, _CRON_NAMES):
        if not _CRON_FIELD.match(field):
            return False
        for token in re.findall(r"[0-9A-Za-z]+", re.sub(r"/\d+", "", field)):
            if token.isdigit():
                if not low <= int(token) <= high:
                    return False
            elif token.lower() not in names:
                return False
    return True


def image_has_digest(image: str) -> bool:
    """name@sha256:<64 hex> (with or without a tag): the image cannot change under the reference."""
    match = IMAGE.match(image)
    return bool(match and match.group("digest"))
