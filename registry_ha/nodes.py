"""The node configurator's Kubernetes objects as plain data: a DaemonSet that writes the containerd
hosts.toml files (registry_ha.containerd) onto every node with a small POSIX sh script.

It needs a hostPath (containerd's /etc/containerd/certs.d) and root (the directory is root's), so
it cannot run in the registry's namespace, which enforces the restricted Pod Security Standard:
hostPath volumes are forbidden by `baseline` already, so its own namespace enforces `privileged`,
the only level that admits them. Everything else is as tight as restricted asks: no privilege
escalation, every capability dropped (root writes its own directory without any), read-only root
filesystem, RuntimeDefault seccomp, no service-account token, one hostPath and nothing else of the host.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from registry_ha.containerd import CERTS_D, NodeFiles
from registry_ha.k8s import CHECKSUM_ANNOTATION, PART_OF, checkov_annotations, container_security_context, labels, resources, selector_labels
from registry_ha.settings import Settings

NAMESPACE = "registry-ha-nodes"
APP = "registry-node-configurator"
COMPONENT = "node-configurator"
SCRIPT_CONFIGMAP = "node-configurator-script"
FILES_SECRET = "node-configurator-files"
SCRIPT_KEY = "node-configurator.sh"
SCRIPT_PATH = Path(__file__).with_name("node_configurator.sh")
HOST_MOUNT = "/host/certs.d"
DESIRED_MOUNT = "/desired"
READY_FILE = "/tmp/synced"
SYNC_SECONDS = 30  # kubelet refreshes a mounted Secret within about a minute: no need to poll faster
CPU_LIMIT = "50m"  # a shell loop that copies a few small files: throttling costs it nothing
# What checkov flags and this DaemonSet does on purpose (checkov.io/skipN annotations; no '=' in a reason).
CHECKOV_WAIVERS = (
    ("CKV_K8S_23", "root on purpose: it writes root's /etc/containerd/certs.d on the node, with every capability "
                   "dropped, no privilege escalation and a read-only root filesystem"),
    ("CKV_K8S_40", "UID 0 on purpose (see CKV_K8S_23): the host directory it writes belongs to root"),
    ("CKV_K8S_8", "no liveness probe: a restart cannot fix a failed sync (the host directory or the Secret mount); "
                  "readiness shows it and the loop retries every 30 s"),
)


def script() -> str:
    return SCRIPT_PATH.read_text()


def namespace_metadata() -> dict:
    level = "privileged"  # hostPath: forbidden by baseline and restricted (see the module docstring)
    return {
        "name": NAMESPACE,
        "labels": {
            "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/managed-by": "pulumi",
            "app.kubernetes.io/component": COMPONENT,
            "pod-security.kubernetes.io/enforce": level,
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/audit": level,
            "pod-security.kubernetes.io/warn": level,
        },
    }


def secret_key(path: str) -> str:
    """A Secret key for a node file path (keys allow only [-._a-zA-Z0-9]): docker.io/hosts.toml -> docker.io__hosts.toml."""
    key = path.replace("/", "__").replace(":", "_")
    if not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
        raise ValueError(f"node file {path!r} makes no Secret key")
    return key


def files_secret_data(files: NodeFiles) -> dict[str, str]:
    return {secret_key(f.path): f.content for f in files.files}


def daemonset_spec(settings: Settings, files: NodeFiles) -> dict:
    """The DaemonSet. nodeConfigurator `remove`: the same pods run the script with --remove (delete what
    it wrote, restore what it moved aside) and mount no files."""
    remove = settings.nodes.configurator == "remove"
    args = ["sh", f"/script/{SCRIPT_KEY}", DESIRED_MOUNT, HOST_MOUNT, "--interval", str(SYNC_SECONDS), "--ready", READY_FILE]
    if remove:
        args.append("--remove")
    volumes = [
        {"name": "script", "configMap": {"name": SCRIPT_CONFIGMAP, "defaultMode": 0o555}},
        {"name": "certs-d", "hostPath": {"path": CERTS_D, "type": "DirectoryOrCreate"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Mi"}},
    ]
    mounts = [
        {"name": "script", "mountPath": "/script", "readOnly": True},
        {"name": "certs-d", "mountPath": HOST_MOUNT},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if not remove:
        volumes.append(
            {
                "name": "desired",
                "secret": {
                    "secretName": FILES_SECRET,
                    "defaultMode": 0o644,
                    "items": [{"key": secret_key(f.path), "path": f.path, "mode": f.mode} for f in files.files],
                },
            }
        )
        mounts.append({"name": "desired", "mountPath": DESIRED_MOUNT, "readOnly": True})
    container = {
        "name": "configurator",
        "image": settings.nodes.configurator_image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        # Ready once this node's files match (kubectl rollout status shows every node done).
        "readinessProbe": {"exec": {"command": ["test", "-f", READY_FILE]}, "periodSeconds": 10},
        "resources": {**resources("5m", "8Mi", "32Mi"),
                      "limits": {"cpu": CPU_LIMIT, "memory": "32Mi"}},
        # root: /etc/containerd/certs.d belongs to root; no capability is needed to write there.
        "securityContext": {**container_security_context(0), "runAsNonRoot": False},
        "volumeMounts": mounts,
    }
    checksum = hashlib.sha256(" ".join(args).encode() + script().encode()).hexdigest()
    return {
        "selector": {"matchLabels": selector_labels(APP, settings.stack)},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}},
        "template": {
            "metadata": {
                "labels": labels(APP, COMPONENT, settings.stack),
                # The script is read once at start: a new script rolls the pods. New files do not:
                # the script re-reads the mounted Secret every SYNC_SECONDS.
                "annotations": {CHECKSUM_ANNOTATION: checksum},
            },
            "spec": {
                "enableServiceLinks": False,
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 5,
                # Every node pulls images, the tainted ones too.
                "tolerations": [{"operator": "Exists"}],
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container],
                "volumes": volumes,
            },
        },
    }


def daemonset_annotations(settings: Settings) -> dict:
    """checkov's waivers for the DaemonSet, each with its reason (the digest ones only while pinned by tag)."""
    return checkov_annotations([settings.nodes.configurator_image], waivers=CHECKOV_WAIVERS)
