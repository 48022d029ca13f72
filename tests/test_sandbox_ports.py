"""The sandbox's port check answers what a real server's bind would (procs.port_free), with TIME_WAIT
sockets on the port: the case where `local up` once said "port already in use"."""
from __future__ import annotations

import socket
import subprocess
import time

import pytest

from conftest import require_binary
from registry_ha.sandbox import procs
from registry_ha.sandbox.core import DEFAULT_LB_PORT, DEFAULT_PORT_BASE
from registry_ha.sandbox.ports import PORT_BASE_RANGE, Ports, ephemeral_range, free_port_base


def time_wait(server_closes_first: bool) -> int:
    """A port holding only a TIME_WAIT socket. The side that closes first keeps the TIME_WAIT: the server
    side (its listener bound with SO_REUSEADDR, as Go, redis and haproxy bind) or a client's ephemeral port
    (a plain socket, as most clients are)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    first, second = (accepted, client) if server_closes_first else (client, accepted)
    port = (listener.getsockname() if server_closes_first else client.getsockname())[1]
    first.close()
    time.sleep(0.05)  # the FIN reaches the other side before it closes too
    second.close()
    listener.close()
    assert procs.tcp_states(port) == {"TIME_WAIT"}, procs.tcp_states(port)
    return port


def plain_bind(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def redis_can_listen(port: int, tmp_path) -> bool:
    """Whether a real server (redis-server: SO_REUSEADDR, like the sandbox's Go servers and haproxy) takes it."""
    redis = require_binary("redis-server")
    proc = subprocess.Popen([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if procs.wait_until(lambda: proc.poll() is not None or "LISTEN" in procs.tcp_states(port), 10):
            return proc.poll() is None
        raise AssertionError("redis-server neither listened nor exited within 10 s")
    finally:
        proc.kill()
        proc.wait()


def test_a_time_wait_the_server_side_left_does_not_block_the_port(tmp_path):
    port = time_wait(server_closes_first=True)
    assert not plain_bind(port)  # what a check without SO_REUSEADDR sees: "already in use"
    assert procs.port_free(port)
    assert redis_can_listen(port, tmp_path)


def test_a_time_wait_a_client_left_blocks_the_real_server_too_and_says_why(tmp_path):
    port = time_wait(server_closes_first=False)
    assert not procs.port_free(port)
    assert not redis_can_listen(port, tmp_path)  # the check is right to refuse it
    reason = procs.port_busy_reason(port)
    assert reason.startswith(f"{port} (only a closed connection in TIME_WAIT, gone within 60 s")


def test_a_listening_port_is_busy_and_a_closed_one_free():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert not procs.port_free(port) and procs.port_busy_reason(port) == str(port)
    assert procs.port_free(port)


def test_the_default_ports_stay_below_the_ephemeral_range():
    """Linux's default net.ipv4.ip_local_port_range starts at 32768: where client connections take their
    ports, and leave TIME_WAITs a listener cannot bind over."""
    plan = Ports(lb=DEFAULT_LB_PORT, base=DEFAULT_PORT_BASE)
    ports = [plan.lb, *plan.planned()]
    assert len(ports) == 102 and 1024 <= min(ports) and max(ports) < 32768


@pytest.mark.parametrize("base", [PORT_BASE_RANGE[0], PORT_BASE_RANGE[1]])
def test_every_planned_port_is_valid_at_the_ends_of_the_allowed_bases(base):
    ports = Ports(lb=5000, base=base).planned()
    assert min(ports) >= 1024 and max(ports) <= 65535


def test_free_port_base_finds_a_base_whose_ports_a_server_can_take():
    base = free_port_base()
    assert all(procs.port_free(p) for p in Ports(lb=0, base=base).planned())


def test_free_port_base_stays_below_the_ephemeral_range():
    """A free port in the ephemeral range can be taken by any outgoing connection between the plan and the
    bind (a cache of the test session's sandbox once lost its port that way)."""
    low = ephemeral_range()[0]
    bases = {free_port_base() for _ in range(50)}
    assert max(Ports(lb=0, base=b).planned()[-1] for b in bases) < low
