#!/usr/bin/python3
"""A scriptable HTTP/2 (h2c, prior knowledge) client for the test suites.

nghttp and h2load cannot reset one stream of a connection on demand; this
can.  One connection to 127.0.0.1:PORT.  Commands on stdin, one a line:

    open NAME METHOD PATH [BODY]   a new stream (BODY: the rest of the line)
    reset NAME                     RST_STREAM(CANCEL) on NAME's stream
    quit                           GOAWAY and exit

Events on stdout, one JSON object a line, flushed at once:

    {"ev":"ready"}                                   connection preface sent
    {"ev":"opened","name":N,"stream":ID}
    {"ev":"headers","name":N,"status":S}
    {"ev":"end","name":N,"status":S,"headers":{..},"body":B,"seq":K}
    {"ev":"reset","name":N,"code":C}                 the server reset it
    {"ev":"closed"}                                  the connection ended

`seq` counts ended streams: the order in which the answers completed.
"""

import json
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.errors
import h2.exceptions
import h2.events

lock = threading.Lock()
out_lock = threading.Lock()


def emit(**ev):
    with out_lock:
        sys.stdout.write(json.dumps(ev) + "\n")
        sys.stdout.flush()


def main():
    port = int(sys.argv[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.settimeout(None)
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True,
                                         header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    streams = {}  # stream id -> state
    names = {}  # name -> stream id
    ended = [0]

    def reader():
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                emit(ev="closed")
                return
            with lock:
                events = conn.receive_data(data)
                for e in events:
                    st = streams.get(getattr(e, "stream_id", None))
                    if isinstance(e, h2.events.ResponseReceived) and st:
                        st["headers"] = dict(e.headers)
                        st["status"] = int(st["headers"].get(":status", 0))
                        emit(ev="headers", name=st["name"],
                             status=st["status"])
                    elif isinstance(e, h2.events.DataReceived):
                        if st:
                            st["body"] += e.data
                        conn.acknowledge_received_data(
                            e.flow_controlled_length, e.stream_id)
                    elif isinstance(e, h2.events.StreamEnded) and st:
                        ended[0] += 1
                        emit(ev="end", name=st["name"], status=st["status"],
                             headers=st["headers"], seq=ended[0],
                             body=st["body"].decode("utf-8", "replace"))
                    elif isinstance(e, h2.events.StreamReset) and st:
                        emit(ev="reset", name=st["name"],
                             code=int(e.error_code))
                    elif isinstance(e, h2.events.ConnectionTerminated):
                        emit(ev="goaway", code=int(e.error_code))
                pending = conn.data_to_send()
                if pending:
                    sock.sendall(pending)

    threading.Thread(target=reader, daemon=True).start()
    emit(ev="ready")

    for line in sys.stdin:
        words = line.rstrip("\n").split(" ", 4)
        cmd = words[0]
        with lock:
            if cmd == "open":
                name, method, path = words[1], words[2], words[3]
                body = words[4].encode() if len(words) > 4 else b""
                sid = conn.get_next_available_stream_id()
                headers = [(":method", method), (":scheme", "http"),
                           (":authority", "localhost"), (":path", path)]
                if body or method == "POST":
                    headers.append(("content-length", str(len(body))))
                conn.send_headers(sid, headers, end_stream=not body
                                  and method != "POST")
                if body or method == "POST":
                    conn.send_data(sid, body, end_stream=True)
                streams[sid] = {"name": name, "status": None,
                                "headers": {}, "body": b""}
                names[name] = sid
                sock.sendall(conn.data_to_send())
                emit(ev="opened", name=name, stream=sid)
            elif cmd == "reset":
                try:
                    conn.reset_stream(names[words[1]],
                                      error_code=h2.errors.ErrorCodes.CANCEL)
                    sock.sendall(conn.data_to_send())
                    emit(ev="resetsent", name=words[1])
                except h2.exceptions.StreamClosedError:
                    emit(ev="resetsent", name=words[1], closed=True)
            elif cmd == "quit":
                break
    with lock:
        try:
            conn.close_connection()
            sock.sendall(conn.data_to_send())
        except Exception:  # the server may be gone already
            pass
    sock.close()


if __name__ == "__main__":
    main()
