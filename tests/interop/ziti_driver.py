#!/usr/bin/env python3
"""Drives the unmodified OpenZiti C SDK (libziti.so from PyPI openziti==0.6.0) for
Weft's interop tests (tests/tests/interop.rs).

Protocol: one JSON command per line on stdin, one JSON answer per line on stdout
(`{"ok": true, ...}` or `{"ok": false, "error": "..."}`). The C SDK's own logs go to
stderr (ZITI_LOG sets their level). The script exits at end of input.

Commands ("op"):
  enroll   {jwt, out}                  openziti.enroll(jwt) and write the identity file
  load     {identity}                  openziti.load(identity): authenticate, list services
  dial     {service, conn}             Ziti_connect; `conn` names the connection
  bind     {service, listener}         Ziti_bind + Ziti_listen
  accept   {listener, conn}            Ziti_accept (blocking)
  send     {conn, data}                sendall(data as UTF-8)
  recv     {conn, n, timeout}          read exactly n bytes (or less at EOF)
  shut_wr  {conn}                      shutdown(SHUT_WR): half-close
  close    {conn}                      close
  wait_end {conn, timeout}             read until EOF or error; says which and when
  bulk_dial   {service, conns, bytes}  `conns` concurrent dials, each sending `bytes`
                                       random bytes, half-closing and reading to EOF
  bulk_accept {listener, conns, bytes} the same on `conns` accepted connections
  bulk_self   {service, listener, bytes} dial a service this context hosts, accept
                                       it, and transfer both ways between the two
The bulk commands report per connection the sha256 of what was sent and received.
"""

import hashlib
import json
import os
import socket
import sys
import threading
import time

# The C SDK and Python wrapper may print; keep our answers on a private copy of stdout.
_ANSWERS = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
# Commands come from a private copy of stdin; fd 0 becomes /dev/null. Reason: when a
# dial fails, the C SDK 0.29.3 closes fd 0 (zitilib.c on_ziti_connect → on_bridge_close
# closes zs->ziti_fd, which is still 0 from calloc). See _restore_fd0.
_COMMANDS = os.fdopen(os.dup(0), "r")
_NULL = os.open(os.devnull, os.O_RDWR)
os.dup2(_NULL, 0)

import openziti  # noqa: E402  (after the fd juggling: it may load identities at import)
from openziti import zitilib  # noqa: E402

CHUNK = 64 * 1024

ctx = None
conns = {}
listeners = {}


def _restore_fd0():
    """After a failed dial the SDK's loop thread closes fd 0 shortly after reporting
    the failure: wait (bounded) for that, then put /dev/null back at fd 0 so that no
    later socket lands there and gets closed by the next failed dial."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.fstat(0)
        except OSError:
            break
        time.sleep(0.01)
    try:
        os.fstat(0)
    except OSError:
        os.dup2(_NULL, 0)


def _close_twin(sock):
    """Closes the other descriptor of this socket's end of the socketpair.

    zitilib.c connect_socket makes a socketpair and dup2()s one end onto the caller's
    socket, but never closes the original descriptor of that end. With a second
    descriptor open, closing the socket does not close it: the C SDK would never see
    the close. Closing the twin restores normal close() semantics."""
    st = os.fstat(sock.fileno())
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd == sock.fileno():
            continue
        try:
            other = os.fstat(fd)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            os.close(fd)


def _settle():
    """Waits until the SDK's loop thread has finished what it had under way, so that
    this thread creates no descriptor while the loop may close a stale number.

    Why: the socket bridge closes its socket twice (bug 6 in docs/interop.md):
    zitilib.c on_bridge_close closes ziti_fd, then conn_bridge.c on_sock_close calls
    uv_close on the uv_tcp_t opened on that same fd, and libuv closes it again. A
    descriptor this thread creates between the two closes can get that number and be
    closed under it (seen in CI: the C SDK crashed on the next dial, right after a
    bridge closed). Both closes run in one callback on the loop thread, so a round trip
    through the loop after the bridge began closing waits for both. Ziti_listen on a
    descriptor the SDK does not know is such a round trip with no effect
    (do_ziti_listen fails it with EBADF). Two of them: the first can be answered in the
    same loop iteration as a socket event that starts a bridge close, before that
    event's callback; the second is only read in a later iteration."""
    if ctx is None:
        return
    for _ in range(2):
        zitilib._ziti_listen(-1, 1)


def _last_error():
    err = zitilib._ziti_lasterr()
    try:
        msg = zitilib.errorstr(err)
    except Exception:  # pragma: no cover
        msg = "?"
    return f"{err} ({msg})"


def dial(service):
    if ctx is None:
        raise RuntimeError("no context loaded")
    fd = zitilib.ziti_socket(socket.SOCK_STREAM)
    rc = zitilib._ziti_connect(fd, ctx._ctx, service.encode(), None)
    if rc != 0:
        err = _last_error()
        os.close(fd)
        _restore_fd0()
        raise RuntimeError(f"Ziti_connect({service}) failed: {err}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
    _close_twin(sock)
    return sock


def bind(service):
    if ctx is None:
        raise RuntimeError("no context loaded")
    sock = ctx.bind(service)
    sock.listen(16)
    return sock


def accept(listener):
    fd, peer = zitilib.accept(listener.fileno())
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
    _close_twin(sock)
    return sock, peer[0]


def recv_exact(sock, n):
    got = bytearray()
    while len(got) < n:
        b = sock.recv(min(CHUNK, n - len(got)))
        if not b:
            break
        got += b
    return bytes(got)


def transfer(sock, nbytes, result, expect=None):
    """Sends nbytes random bytes while reading to EOF, then half-closes; fills result.

    The half-close waits for the peer's EOF: the C SDK's socket bridge (conn_bridge.c
    on_ziti_data) closes the socket as soon as both directions saw EOF, dropping the
    received data it has not yet written into the socket. Half-closing first and then
    receiving a large download would therefore truncate it (docs/interop.md).

    With `expect` (both ends are this driver, each waiting for the other's EOF would
    deadlock): read exactly that many bytes and close without a half-close."""
    data = os.urandom(nbytes)
    result["sent"] = nbytes
    result["sent_sha256"] = hashlib.sha256(data).hexdigest()
    eof = threading.Event()

    def writer():
        try:
            view = memoryview(data)
            for i in range(0, len(view), CHUNK):
                sock.sendall(view[i:i + CHUNK])
            if expect is None:
                eof.wait()
                sock.shutdown(socket.SHUT_WR)
        except Exception as e:  # reported below
            result["send_error"] = repr(e)

    t = threading.Thread(target=writer)
    t.start()
    h = hashlib.sha256()
    n = 0
    try:
        while expect is None or n < expect:
            b = sock.recv(CHUNK if expect is None else min(CHUNK, expect - n))
            if not b:
                break
            h.update(b)
            n += len(b)
    except Exception as e:
        result["recv_error"] = repr(e)
    eof.set()
    t.join()
    result["received"] = n
    result["received_sha256"] = h.hexdigest()
    sock.close()


def run_parallel(socks, nbytes, expect=None):
    results = [dict(conn=i) for i in range(len(socks))]
    threads = [threading.Thread(target=transfer, args=(s, nbytes, r, expect))
               for s, r in zip(socks, results)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def handle(cmd):
    global ctx
    op = cmd["op"]
    # Every command may create descriptors (sockets, files, /proc/self/fd scans).
    _settle()
    if op == "enroll":
        identity = openziti.enroll(cmd["jwt"])
        with open(cmd["out"], "w") as f:
            f.write(identity)
        return {"identity": json.loads(identity)}
    if op == "load":
        ctx = openziti.load(cmd["identity"])
        if not ctx or not ctx._ctx:
            ctx = None
            raise RuntimeError(f"openziti.load failed: {_last_error()}")
        return {}
    if op == "dial":
        conns[cmd["conn"]] = dial(cmd["service"])
        return {}
    if op == "bind":
        listeners[cmd["listener"]] = bind(cmd["service"])
        return {}
    if op == "accept":
        sock, peer = accept(listeners[cmd["listener"]])
        conns[cmd["conn"]] = sock
        return {"peer": peer}
    if op == "send":
        conns[cmd["conn"]].sendall(cmd["data"].encode())
        return {}
    if op == "recv":
        sock = conns[cmd["conn"]]
        sock.settimeout(cmd.get("timeout", 10))
        try:
            data = recv_exact(sock, cmd["n"])
        finally:
            sock.settimeout(None)
        return {"data": data.decode(errors="replace")}
    if op == "shut_wr":
        conns[cmd["conn"]].shutdown(socket.SHUT_WR)
        return {}
    if op == "close":
        conns.pop(cmd["conn"]).close()
        return {}
    if op == "wait_end":
        sock = conns[cmd["conn"]]
        timeout = cmd.get("timeout", 10)
        start = time.monotonic()
        sock.settimeout(timeout)
        extra = bytearray()
        try:
            while True:
                b = sock.recv(CHUNK)
                if not b:
                    end = "eof"
                    break
                extra += b
        except socket.timeout:
            end = "timeout"
        except OSError as e:
            end = f"error: {e!r}"
        finally:
            sock.settimeout(None)
        return {"end": end, "data": extra.decode(errors="replace"),
                "after_ms": int((time.monotonic() - start) * 1000)}
    if op == "bulk_dial":
        socks = [dial(cmd["service"]) for _ in range(cmd["conns"])]
        return {"results": run_parallel(socks, cmd["bytes"])}
    if op == "bulk_accept":
        socks = [accept(listeners[cmd["listener"]])[0] for _ in range(cmd["conns"])]
        return {"results": run_parallel(socks, cmd["bytes"])}
    if op == "bulk_self":
        # Dial a service this context hosts; accept that dial; transfer both ways.
        accepted = {}
        t = threading.Thread(target=lambda: accepted.update(
            sock=accept(listeners[cmd["listener"]])[0]))
        t.start()
        dialed = dial(cmd["service"])
        t.join()
        return {"results": run_parallel([dialed, accepted["sock"]], cmd["bytes"],
                                        expect=cmd["bytes"])}
    raise ValueError(f"unknown op {op!r}")


def main():
    for line in _COMMANDS:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            answer = {"ok": True, **handle(cmd)}
        except Exception as e:
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), file=_ANSWERS, flush=True)
    # Leave without running the SDK's teardown (Ziti_lib_shutdown is not needed and
    # the interpreter's exit would otherwise wait on the SDK's loop thread).
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
