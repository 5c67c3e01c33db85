"""What every scripted server of the tests shares (fakepop3.py,
faultproxy.py, throttlelib.py): a listening socket on 127.0.0.1 and
nowhere else, a thread that accepts on it and hands each connection to
the subclass, and start / stop / `with`.

A subclass calls `_listen_init()` in its __init__, implements
`_accepted(sock)` (usually `self._spawn(...)` of a thread for it) and,
if its connections must be ended on stop, `_end_sessions()`.
"""

from __future__ import annotations

import socket
import threading

LOOPBACK = "127.0.0.1"


class LoopbackServer:
    backlog = 64
    thread_name = "server"

    def _listen_init(self):
        self._listener = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.port = None

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOOPBACK, 0))
        s.listen(self.backlog)
        s.settimeout(0.2)
        self._listener = s
        self.port = s.getsockname()[1]
        self._spawn(self._accept_loop, (), str(self.port))
        return self

    def stop(self):
        self._stop.set()
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
        self._end_sessions()
        for t in list(self._threads):
            t.join(5)

    def _end_sessions(self):
        pass

    def _accepted(self, sock):
        raise NotImplementedError

    def _spawn(self, target, args, suffix):
        t = threading.Thread(target=target, args=args, daemon=True,
                             name=f"{self.thread_name}-{suffix}")
        self._threads.append(t)
        t.start()
        return t

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self._accepted(c)
