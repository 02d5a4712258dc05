#!/usr/bin/env python3
"""Measure how fast pymesos itself decodes a JSON RecordIO scheduler event stream.

Usage (with the venv that has pymesos, see bench/decode_vs_pymesos.sh):
    .venv/bin/python bench/pymesos_decode.py [--transport mem|tcp] [--dispatch counter|scheduler] FILE

Output: one line,
    pymesos kind=offers bytes=N events=N secs=S MBps=X events_per_s=Y transport=... dispatch=... runs=K
where bytes is the size of the RecordIO stream FILE (HTTP chunk framing excluded), secs is the best
(shortest) of K runs, MB = 10^6 bytes. K >= --min-runs, and runs repeat until >= --min-time seconds
have been spent in measured runs.

WHAT IS MEASURED (pymesos 0.3.15, pymesos/process.py)
-----------------------------------------------------
pymesos has no body callback that can be fed bytes: http-parser is used in pull mode, and the whole
receive path lives in one method, `pymesos.process.Connection.read()`, which pulls from
`self._sock.recv(PIPE_BUF)` (PIPE_BUF = 4096 on Linux). One call of `Connection.read()` does:
  1. `self._sock.recv(4096)`
  2. `http_parser.parser.HttpParser.execute(buf, n)` (the C http-parser from Debian's
     python3-http-parser; it removes the HTTP chunked framing) and, on the first call, the
     header checks (status 200, chunked, Mesos-Stream-Id)
  3. `self._response += HttpParser.recv_body()`
  4. the RecordIO split: `LENGTH_PATTERN.match` (regex br'\\d+\\n'), `int(...)`, byte slicing
  5. `json.loads(data.decode('utf-8'))` per record
  6. `self._callback.process_event(event)` = `pymesos.process.Process.process_event`, which calls
     `on_event(event)`.
The measured loop is therefore pymesos's own code, unmodified, in both transports:
  --transport mem (default): `while conn.read(): pass` on a real `pymesos.process.Connection`
      (built by its own __init__, request sent by its own `write()`), whose `_sock` is then swapped
      for an in-memory object that serves the pre-rendered HTTP response through `recv(n)`,
      honouring pymesos's n=4096 (or --chunk bytes if given). Nothing but a bytes slice per recv is
      outside pymesos. This is the pure decode cost, comparable with a decoder reading a file.
  --transport tcp: pymesos's real IO thread, `pymesos.process.Process._run()` (select loop +
      `Connection.__init__/handle_connect_event/write/read`), talking to a local HTTP server on
      127.0.0.1 (a forked child of this script) that answers the SUBSCRIBE POST with a real
      `Transfer-Encoding: chunked` response, one HTTP chunk per RecordIO record (as Mesos writes
      them). Adds the kernel, select() and thread wake-ups: what a real framework pays.
Dispatch (what `on_event` is):
  --dispatch counter (default): a `pymesos.process.Process` subclass whose `on_event` only counts.
  --dispatch scheduler: `pymesos.MesosSchedulerDriver.on_event` (pymesos's own dispatch: event
      type lookup, `on_offers` / `on_update`, one `dict(offer)` copy per offer / `dict(status)`), with
      a Scheduler whose `resourceOffers` / `statusUpdate` only count; implicit_acknowledgements=False
      so no ACK calls are sent.
Not measured: reading FILE, building the HTTP response, constructing the Connection (mem), and
the per-run setup; the event count is checked against the stream after every run.
"""

import argparse
import os
import signal
import socket
import sys
import threading
import time

try:
    import pymesos
    from pymesos import MesosSchedulerDriver, Scheduler
    from pymesos import process as pm_process
    from pymesos.process import Connection, Process
except ImportError as e:  # pragma: no cover
    sys.exit("pymesos_decode.py: cannot import pymesos (%s); run it with the venv python "
             "(see bench/decode_vs_pymesos.sh)" % e)

STREAM_ID = "4b4e6e0e-2a62-4bd4-9b9a-2d0f6d8d1c11"


# ---------------------------------------------------------------- stream helpers (not measured)

def split_recordio(data):
    """Independent RecordIO split, used only to count records and build HTTP chunks."""
    recs = []
    i, n = 0, len(data)
    while i < n:
        j = data.index(b"\n", i)
        length = int(data[i:j])
        recs.append(data[j + 1:j + 1 + length])
        i = j + 1 + length
    if i != n:
        raise ValueError("truncated RecordIO stream")
    return recs


def build_http_response(data, records):
    """A Mesos-like SUBSCRIBE response: 200, chunked, one chunk per RecordIO record."""
    head = ("HTTP/1.1 200 OK\r\n"
            "Date: Fri, 23 Aug 2024 16:20:00 GMT\r\n"
            "Content-Type: application/json\r\n"
            "Mesos-Stream-Id: %s\r\n"
            "Transfer-Encoding: chunked\r\n\r\n" % STREAM_ID).encode("ascii")
    parts = [head]
    for rec in records:
        framed = b"%d\n" % len(rec) + rec
        parts.append(b"%x\r\n" % len(framed))
        parts.append(framed)
        parts.append(b"\r\n")
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def detect_kind(first_record):
    head = first_record[:64]
    if b'"type":"OFFERS"' in head:
        return "offers"
    if b'"type":"UPDATE"' in head:
        return "updates"
    return "mixed"


# ---------------------------------------------------------------- pymesos callbacks

SUBSCRIBE_BODY = (b'{"type":"SUBSCRIBE","subscribe":{"framework_info":'
                  b'{"user":"bench","name":"pymesos-decode-bench","failover_timeout":100}}}')


class _BenchMixin(object):
    """Common bench plumbing; everything pymesos calls on its hot path is pymesos's own code."""

    def _bench_setup(self, stop_on_close):
        self.events = 0
        self.closed = threading.Event()
        self._stop_on_close = stop_on_close

    def on_close(self):
        # Called by Connection.close() once the stream ended (read() returned False).
        if self._stop_on_close:
            # Make Process._run() exit instead of reconnecting to the bench server.
            with self._lock:
                self._master = None
                self._new_master = None
            self.stop()
        self.closed.set()


class CountingProcess(_BenchMixin, Process):
    """A bare pymesos Process: on_event only counts."""

    def __init__(self, addr, stop_on_close):
        Process.__init__(self)
        self._bench_setup(stop_on_close)
        self._addr_str = addr

    def gen_request(self):
        return (b"POST /api/v1/scheduler HTTP/1.1\r\nHost: %s\r\n"
                b"Content-Type: application/json\r\nAccept: application/json\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                % (self._addr_str.encode(), len(SUBSCRIBE_BODY), SUBSCRIBE_BODY))

    def on_event(self, event):
        self.events += 1


class CountingScheduler(Scheduler):
    def __init__(self):
        self.driver = None

    def resourceOffers(self, driver, offers):
        driver.events += 1

    def statusUpdate(self, driver, update):
        driver.events += 1

    def inverseOffers(self, driver, offers):
        pass


class CountingDriver(_BenchMixin, MesosSchedulerDriver):
    """pymesos's MesosSchedulerDriver (its gen_request and on_event dispatch), counting scheduler."""

    def __init__(self, addr, stop_on_close):
        MesosSchedulerDriver.__init__(
            self, CountingScheduler(), {"user": "bench", "name": "pymesos-decode-bench"}, addr,
            use_addict=False, implicit_acknowledgements=False)
        self._bench_setup(stop_on_close)
        self.version = "1.12.0"

    def _get_version(self, master):
        # The real driver GETs /version from the master in change_master(); not part of decoding.
        return "1.12.0"

    def on_event(self, event):
        # Count events that are not forwarded to a scheduler callback as well (e.g. HEARTBEAT).
        t = event.get("type")
        if t not in ("OFFERS", "UPDATE"):
            self.events += 1
        MesosSchedulerDriver.on_event(self, event)


def make_callback(dispatch, addr, stop_on_close):
    if dispatch == "counter":
        return CountingProcess(addr, stop_on_close)
    return CountingDriver(addr, stop_on_close)


# ---------------------------------------------------------------- transports

class MemSock(object):
    """Stands in for the socket after Connection.__init__: serves the response via recv(n)."""

    def __init__(self, data, chunk):
        self._data = data
        self._pos = 0
        self._chunk = chunk

    def recv(self, n):
        if self._chunk:
            n = self._chunk
        pos = self._pos
        buf = self._data[pos:pos + n]
        self._pos = pos + len(buf)
        return buf

    def send(self, b):
        return len(b)

    def getsockopt(self, *a):
        return 0

    def fileno(self):
        return -1

    def close(self):
        pass


def run_mem(response, listener, dispatch, chunk):
    addr = "%s:%d" % listener.getsockname()
    cb = make_callback(dispatch, addr, stop_on_close=False)
    cb._master = addr
    cb._started = True        # what Process.start() sets; process_event() drops events otherwise
    conn = Connection(addr, cb)       # pymesos's own constructor (real non-blocking connect)
    try:
        peer, _ = listener.accept()
        peer.close()
    except (BlockingIOError, socket.timeout):
        pass
    conn._sock.close()
    conn._sock = MemSock(response, chunk)
    conn.connected = True
    while conn.want_write():
        conn.write()

    read = conn.read
    t0 = time.perf_counter()
    while read():
        pass
    secs = time.perf_counter() - t0

    if not conn._parser.is_message_complete():
        raise RuntimeError("pymesos stopped before the end of the stream")
    if conn._response:
        raise RuntimeError("pymesos left %d undecoded bytes" % len(conn._response))
    return secs, cb.events


def serve_forever(listener, response):
    """Child process: answer each SUBSCRIBE POST with the pre-built chunked response."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    listener.setblocking(True)
    while True:
        s, _ = listener.accept()
        try:
            req = b""
            while b"\r\n\r\n" not in req:
                more = s.recv(65536)
                if not more:
                    break
                req += more
            head, _, body = req.partition(b"\r\n\r\n")
            clen = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    clen = int(v)
            while len(body) < clen:
                more = s.recv(65536)
                if not more:
                    break
                body += more
            if req.startswith(b"POST /api/v1/scheduler "):
                s.sendall(response)
            else:
                s.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            # Wait for the client to close so the last bytes are not reset.
            while s.recv(65536):
                pass
        except OSError:
            pass
        finally:
            s.close()


def run_tcp(addr, dispatch):
    cb = make_callback(dispatch, addr, stop_on_close=True)
    Process.start(cb)          # pymesos's IO thread: Process._run() (not the driver's start(),
                               # which would also call change_master itself)
    t0 = time.perf_counter()
    cb.change_master(addr)     # wakes _run(), which connects, sends SUBSCRIBE, reads the stream
    if not cb.closed.wait(600):
        raise RuntimeError("timed out waiting for pymesos to finish the stream")
    secs = time.perf_counter() - t0
    cb.join()
    return secs, cb.events


# ---------------------------------------------------------------- main

def pymesos_version():
    try:
        from importlib.metadata import version
        return version("pymesos")
    except Exception:
        return getattr(pymesos, "__version__", "unknown")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Measure pymesos's own JSON RecordIO decode speed.")
    ap.add_argument("file", help="RecordIO stream of JSON scheduler events (bench/mkstream.py)")
    ap.add_argument("--transport", choices=["mem", "tcp"], default="mem")
    ap.add_argument("--dispatch", choices=["counter", "scheduler"], default="counter")
    ap.add_argument("--kind", help="label for the output (default: from the first event)")
    ap.add_argument("--min-time", type=float, default=2.0,
                    help="keep running until this many measured seconds (default 2)")
    ap.add_argument("--min-runs", type=int, default=3)
    ap.add_argument("--max-runs", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=0,
                    help="mem transport: bytes per recv() regardless of pymesos's request "
                         "(default 0 = honour pymesos's recv(PIPE_BUF=%d))" % pm_process.PIPE_BUF)
    ap.add_argument("-v", "--verbose", action="store_true", help="print every run to stderr")
    args = ap.parse_args(argv)

    with open(args.file, "rb") as f:
        data = f.read()
    records = split_recordio(data)
    if not records:
        sys.exit("empty stream")
    expected = len(records)
    kind = args.kind or detect_kind(records[0])
    response = build_http_response(data, records)
    del records

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    addr = "%s:%d" % listener.getsockname()

    child = None
    if args.transport == "tcp":
        child = os.fork()
        if child == 0:
            try:
                serve_forever(listener, response)
            finally:
                os._exit(0)
        listener.close()
    else:
        listener.setblocking(False)

    best = None
    total = 0.0
    runs = 0
    try:
        while runs < args.max_runs and (runs < args.min_runs or total < args.min_time):
            if args.transport == "mem":
                secs, events = run_mem(response, listener, args.dispatch, args.chunk)
            else:
                secs, events = run_tcp(addr, args.dispatch)
            if events != expected:
                raise RuntimeError("pymesos delivered %d events, the stream has %d" % (events, expected))
            runs += 1
            total += secs
            best = secs if best is None else min(best, secs)
            if args.verbose:
                print("run %d: %.4f s" % (runs, secs), file=sys.stderr)
    finally:
        if child:
            os.kill(child, signal.SIGTERM)
            os.waitpid(child, 0)

    nbytes = len(data)
    print("pymesos kind=%s bytes=%d events=%d secs=%.6f MBps=%.3f events_per_s=%.1f "
          "transport=%s dispatch=%s runs=%d pymesos_version=%s python=%s"
          % (kind, nbytes, expected, best, nbytes / best / 1e6, expected / best,
             args.transport, args.dispatch, runs,
             pymesos_version(), sys.version.split()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
