"""Process and port helpers for the sandbox: start in a new session, identify by pid + start time, stop.

A pid alone is not an identity (pids are reused), so every process is recorded with its
`/proc/<pid>/stat` start time; `down` signals a pid only while both still match.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def minimal_env(home: Path, extra: Optional[dict] = None) -> dict:
    """The whole environment a server gets: no AWS_*, no proxies, nothing inherited."""
    env = {"PATH": SAFE_PATH, "HOME": str(home), "LANG": "C.UTF-8"}
    env.update(extra or {})
    return env


def start_time(pid: int) -> Optional[int]:
    """Start time of `pid` in clock ticks since boot, or None when there is no such live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    fields = raw[raw.rindex(")") + 2 :].split()
    state, starttime = fields[0], int(fields[19])
    if state in ("Z", "X"):
        if _threads_alive(pid):
            # A Go server's main thread can be a zombie while its other threads still run the exit: its
            # listening socket stays open until the last one is gone, so the process still counts.
            return starttime
        _reap(pid)
        return None
    return starttime


def _threads_alive(pid: int) -> bool:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        if raw[raw.rindex(")") + 2 :].split()[0] not in ("Z", "X"):
            return True
    return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def is_running(pid: Optional[int], started: Optional[int]) -> bool:
    return pid is not None and started is not None and start_time(pid) == started


def spawn(argv: Sequence[str], log_path: Path, env: dict, cwd: Path) -> tuple[int, int]:
    """Start `argv` in its own session (its own process group), output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(cwd),
            start_new_session=True,
            close_fds=True,
        )
    started = None
    for _ in range(100):
        started = start_time(proc.pid)
        if started is not None or proc.poll() is not None:
            break
        time.sleep(0.01)
    if started is None:
        raise RuntimeError(f"{argv[0]} exited at once (code {proc.poll()}); see {log_path}")
    return proc.pid, started


def _signal_group(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop(pid: Optional[int], started: Optional[int], timeout: float = 15.0) -> bool:
    """SIGTERM the process group of a recorded process, SIGKILL after `timeout`. True if it was running."""
    if not is_running(pid, started):
        return False
    assert pid is not None
    _signal_group(pid, signal.SIGTERM)
    _signal_group(pid, signal.SIGCONT)  # a stopped (SIGSTOP) process only acts on SIGTERM once continued
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(pid, started):
            return True
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    for _ in range(200):
        if not is_running(pid, started):
            break
        time.sleep(0.05)
    return True


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server can listen on host:port. The servers (Go's net.Listen, redis, haproxy) bind with
    SO_REUSEADDR, which lets a new listener take a port whose old connections linger in TIME_WAIT; a
    check without it would refuse ports the servers can use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
               "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def tcp_states(port: int) -> set[str]:
    """States of the TCP sockets whose local port is `port` (from /proc/net/tcp and tcp6)."""
    states = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                states.add(_TCP_STATES.get(fields[3], fields[3]))
    return states


def port_busy_reason(port: int) -> str:
    """Why a port is not free, in words an operator can act on."""
    states = tcp_states(port)
    if states and states <= {"TIME_WAIT"}:
        return (f"{port} (only a closed connection in TIME_WAIT, gone within 60 s; it still blocks a listener "
                "because that connection's socket did not allow address reuse)")
    return str(port)


def port_listening(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_status(address: str, path: str = "/", timeout: float = 2.0, method: str = "GET",
                ca_file: Optional[str] = None) -> Optional[int]:
    """Status code of a request to host:port (never through a proxy), or None. Plain HTTP, or HTTPS
    verified against `ca_file` (certificate chain and the host name/IP) when one is given."""
    host, _, port = address.rpartition(":")
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException, ssl.SSLError):
        return None
    finally:
        conn.close()


def redis_ping(address: str, password: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            pw = password.encode()
            sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(pw), pw))
            data = b""
            while b"PONG" not in data and len(data) < 200:
                chunk = sock.recv(200)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"+OK") and b"+PONG" in data
    except OSError:
        return False


def haproxy_stats(sock_path: Path, backend: str = "replicas") -> dict[str, dict[str, str]]:
    """`show stat` rows of one haproxy backend from its admin socket: server name -> CSV columns."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(str(sock_path))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = (dict(zip(header, line.split(","))) for line in lines[1:])
    return {row["svname"]: row for row in rows if row.get("pxname") == backend}


def haproxy_server_status(sock_path: Path, server: str, backend: str = "replicas") -> str:
    """`status` of one server (UP, DOWN, UP 1/2, ...)."""
    rows = haproxy_stats(sock_path, backend)
    if server not in rows:
        raise RuntimeError(f"{server} not in haproxy stats of {sock_path}")
    return rows[server]["status"]


def wait_until(check, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
