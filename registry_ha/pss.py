"""The Kubernetes Pod Security Standards, "restricted" profile, as a plain function.

Written from the official definition (https://kubernetes.io/docs/concepts/security/pod-security-standards/,
the `restricted` profile includes every `baseline` control). Standard library only: the CrossGuard
policy pack (`policy/policies.py`) imports this module too, and its virtualenv has no project packages.

`restricted_violations(pod_spec, pod_annotations)` returns one human-readable line per violation;
`workload_pod(manifest)` finds the pod template in a Pod, Deployment, StatefulSet, DaemonSet,
ReplicaSet, ReplicationController, Job or CronJob.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Optional

# Restricted: every other volume type (hostPath, nfs, iscsi, gcePersistentDisk, ...) is forbidden.
ALLOWED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
# Baseline "Sysctls": the safe set (as of Kubernetes 1.32; older clusters allow a subset).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
ALLOWED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})
ALLOWED_APPARMOR = frozenset({"RuntimeDefault", "Localhost"})
ALLOWED_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"

POD_TEMPLATE_PATHS = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def workload_pod(manifest: Mapping[str, Any]) -> Optional[tuple[Mapping, Mapping]]:
    """(pod spec, pod metadata) of a workload manifest, or None when the kind has no pod."""
    path = POD_TEMPLATE_PATHS.get(manifest.get("kind", ""))
    if path is None:
        return None
    node: Any = manifest
    for step in path:
        node = (node or {}).get(step) or {}
    return (node.get("spec") or {}), (node.get("metadata") or {})


def containers_of(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping]]:
    """("containers[name]", container) for containers, initContainers and ephemeralContainers."""
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod_spec.get(field) or []:
            yield f"{field}[{container.get('name', '?')}]", container


def _sc(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("securityContext") or {}


def restricted_violations(pod_spec: Mapping[str, Any], pod_annotations: Optional[Mapping[str, str]] = None) -> list[str]:
    """Every way `pod_spec` breaks the restricted Pod Security Standard ([] when it complies)."""
    out: list[str] = []
    pod_sc = _sc(pod_spec)
    containers = list(containers_of(pod_spec))

    # --- baseline: host namespaces, host process, privileged, host ports, hostPath, /proc, sysctls
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            out.append(f"spec.{field} must be unset or false")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("spec.securityContext.windowsOptions.hostProcess must be unset or false")
    for where, container in containers:
        sc = _sc(container)
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{where}.securityContext.windowsOptions.hostProcess must be unset or false")
        if sc.get("privileged"):
            out.append(f"{where}.securityContext.privileged must be unset or false")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{where}.ports hostPort {port.get('hostPort')} must be unset or 0")
        if sc.get("procMount") not in (None, "Default"):
            out.append(f"{where}.securityContext.procMount must be unset or Default")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"spec.securityContext.sysctls {sysctl.get('name')!r} is not in the safe set")

    # --- baseline: AppArmor and SELinux
    for where, sc in [("spec", pod_sc)] + [(w, _sc(c)) for w, c in containers]:
        profile = (sc.get("appArmorProfile") or {}).get("type")
        if profile is not None and profile not in ALLOWED_APPARMOR:
            out.append(f"{where}.securityContext.appArmorProfile.type must be RuntimeDefault or Localhost (got {profile!r})")
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in ALLOWED_SELINUX_TYPES:
            out.append(f"{where}.securityContext.seLinuxOptions.type {selinux.get('type')!r} is not allowed")
        for field in ("user", "role"):
            if selinux.get(field):
                out.append(f"{where}.securityContext.seLinuxOptions.{field} must be unset")
    for key, value in (pod_annotations or {}).items():
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and value != "runtime/default" and not str(value).startswith("localhost/"):
            out.append(f"annotation {key}={value!r}: AppArmor must be runtime/default or localhost/*")

    # --- restricted: volume types
    for volume in pod_spec.get("volumes") or []:
        kinds = [k for k in volume if k != "name"]
        bad = [k for k in kinds if k not in ALLOWED_VOLUME_TYPES]
        if bad:
            out.append(f"volume {volume.get('name')!r}: type {', '.join(bad)} is not allowed (allowed: {', '.join(sorted(ALLOWED_VOLUME_TYPES))})")

    # --- restricted: per container
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP:
        out.append(f"spec.securityContext.seccompProfile.type must be RuntimeDefault or Localhost (got {pod_seccomp!r})")
    if pod_sc.get("runAsUser") == 0:
        out.append("spec.securityContext.runAsUser must not be 0")
    if pod_sc.get("runAsNonRoot") is False:
        out.append("spec.securityContext.runAsNonRoot must not be false")
    for where, container in containers:
        sc = _sc(container)
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{where}.securityContext.allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            out.append(f"{where}: runAsNonRoot must be true (in the container or the pod securityContext)")
        if sc.get("runAsUser") == 0:
            out.append(f"{where}.securityContext.runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is None and pod_seccomp is None:
            out.append(f"{where}: seccompProfile.type must be RuntimeDefault or Localhost (container or pod)")
        elif seccomp is not None and seccomp not in ALLOWED_SECCOMP:
            out.append(f"{where}.securityContext.seccompProfile.type must be RuntimeDefault or Localhost (got {seccomp!r})")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            out.append(f"{where}.securityContext.capabilities.drop must include ALL")
        added = [c for c in capabilities.get("add") or [] if c not in ALLOWED_ADDED_CAPABILITIES]
        if added:
            out.append(f"{where}.securityContext.capabilities.add may only hold NET_BIND_SERVICE (got {added})")
    return out


def manifest_violations(manifest: Mapping[str, Any]) -> list[str]:
    """Restricted-PSS violations of a workload manifest; [] for kinds without a pod."""
    found = workload_pod(manifest)
    if found is None:
        return []
    pod_spec, pod_metadata = found
    return restricted_violations(pod_spec, pod_metadata.get("annotations") or {})
