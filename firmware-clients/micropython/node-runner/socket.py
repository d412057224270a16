# A `socket` module for the MicroPython WebAssembly VM, which has none. It keeps
# the MicroPython/CPython API that edgebus.py uses and forwards each call to
# _ebnet, a JS module that blocks until the worker thread (net-worker.mjs) has
# done the real TCP I/O. Errors come back as negative errno and become OSError.
import _ebnet

AF_INET = 2
SOCK_STREAM = 1
IPPROTO_TCP = 6
TCP_NODELAY = 1


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    return [(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", (host, port))]


def _check(r):
    if isinstance(r, int) and r < 0:
        raise OSError(-r)
    return r


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        self.fd = None
        self.timeout = None  # seconds; None blocks, 0 is non-blocking

    def _ms(self):
        return -1 if self.timeout is None else int(self.timeout * 1000)

    def settimeout(self, t):
        self.timeout = t

    def setblocking(self, flag):
        self.timeout = None if flag else 0

    def setsockopt(self, level, opt, value):
        pass  # the worker always sets TCP_NODELAY

    def connect(self, addr):
        self.fd = _check(_ebnet.connect(addr[0], addr[1], self._ms()))

    def send(self, data):
        return _check(_ebnet.send(self.fd, bytes(data).hex()))

    write = send

    def recv(self, n):
        return bytes(_check(_ebnet.recv(self.fd, n, self._ms())))

    read = recv

    def close(self):
        if self.fd is not None:
            _ebnet.close(self.fd)
            self.fd = None
