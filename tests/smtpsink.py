"""A minimal SMTP server for the tests: `python3 smtpsink.py DIR` listens
on 127.0.0.1 (a free port, printed on stdout), takes any sender and
recipients and writes each message's data, dot-unstuffed, with its
envelope, to DIR/<n>.eml and DIR/<n>.env, one connection at a time, until
it is killed.  Every read has a deadline (10 s)."""

import os
import socket
import sys


def serve(directory: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    print(listener.getsockname()[1], flush=True)
    count = 0
    while True:
        conn, _ = listener.accept()
        conn.settimeout(10)
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 sink ESMTP\r\n")
            envelope = []
            for line in lines:
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    conn.sendall(b"250 sink\r\n")
                elif verb in (b"MAIL", b"RCPT"):
                    envelope.append(line.rstrip(b"\r\n"))
                    conn.sendall(b"250 ok\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go on\r\n")
                    data = []
                    for body in lines:
                        if body == b".\r\n":
                            break
                        data.append(body[1:] if body.startswith(b".") else body)
                    count += 1
                    path = os.path.join(directory, "%d" % count)
                    with open(path + ".env", "wb") as f:
                        f.write(b"\n".join(envelope) + b"\n")
                    with open(path + ".tmp", "wb") as f:
                        f.write(b"".join(data))
                    os.rename(path + ".tmp", path + ".eml")
                    envelope = []
                    conn.sendall(b"250 queued\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    break
                else:
                    conn.sendall(b"250 ok\r\n")


if __name__ == "__main__":
    serve(sys.argv[1])
