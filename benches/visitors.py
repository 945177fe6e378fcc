#!/usr/bin/env python3
"""Visitors for benches/load.sh: each connection does a TLS handshake (full, or resumed from
the previous connection's session), one HTTP/1.1 GET with Host, reads the response, closes.
Usage: visitors.py PORT new|reuse SECONDS PROCESSES. Prints 'N connections in S real seconds'
and the p50/p99 connection time."""
import multiprocessing, socket, ssl, sys, time

def worker(port, mode, seconds, out):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    session, times, resumed = None, [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        raw = socket.create_connection(("127.0.0.1", port))
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session if mode == "reuse" else None)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass
        resumed += s.session_reused
        if mode == "reuse":
            session = s.session
        s.close()
        times.append(time.monotonic() - t0)
    out.put((len(times), resumed, times))

if __name__ == "__main__":
    port, mode, seconds, procs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=worker, args=(port, mode, seconds, q)) for _ in range(procs)]
    for p in ps: p.start()
    results = [q.get() for _ in ps]
    for p in ps: p.join()
    n = sum(r[0] for r in results); resumed = sum(r[1] for r in results)
    times = sorted(t for r in results for t in r[2])
    pct = lambda p: f"{times[min(len(times) - 1, int(len(times) * p))] * 1e3:.2f}ms" if times else "-"
    print(f"{n} connections in {int(round(seconds))} real seconds; resumed {resumed}")
    print(f"50% {pct(0.5)}\n99% {pct(0.99)}")
