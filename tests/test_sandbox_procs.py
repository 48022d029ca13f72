"""The process supervisor's notion of "running": a process counts until its last thread is gone."""
from __future__ import annotations

import os
import sys
import textwrap

from registry_ha.sandbox import procs
from registry_ha.sandbox.ports import free_port

# The main thread leaves (pthread_exit, as a Go server's can during its exit) while another thread
# keeps the listening socket open: /proc shows the leader as a zombie, the port is still taken.
LEADER_EXITS_FIRST = textwrap.dedent("""
    import ctypes, signal, socket, sys, threading, time
    listener = socket.socket(); listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1]))); listener.listen()
    def serve():
        time.sleep(float(sys.argv[2]))
        listener.close()
    threading.Thread(target=serve).start()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # SIGTERM is not the point: the thread's own exit is
    ctypes.CDLL(None).pthread_exit(None)
""")


def test_a_process_whose_main_thread_exited_first_runs_until_its_socket_is_closed(tmp_path):
    port = free_port()
    pid, started = procs.spawn([sys.executable, "-c", LEADER_EXITS_FIRST, str(port), "1.5"], tmp_path / "log",
                               dict(os.environ), tmp_path)
    assert procs.wait_until(lambda: procs.port_listening(port), 10, 0.05)
    assert procs.wait_until(lambda: "Z" in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1][:3], 5, 0.02)
    assert procs.is_running(pid, started)  # the leader is a zombie, the socket is not closed
    assert not procs.port_free(port)
    procs.stop(pid, started, timeout=10)  # returns once the process is gone
    assert procs.port_free(port)
