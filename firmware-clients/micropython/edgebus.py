# edgebus.py - MQTT 3.1.1 client (MQTT 5 with proto=5) with the umqtt.simple API, plus reconnect()
# and publish_stream(). Runs unchanged on MicroPython and CPython 3. [MQTT-x.y.z-n] cite MQTT 3.1.1.
import socket
import time

ticks_ms = getattr(time, "ticks_ms", lambda: int(time.monotonic() * 1000))  # CPython: monotonic()
ticks_diff = getattr(time, "ticks_diff", lambda a, b: a - b)

class MQTTException(Exception):
    pass

def _bytes(s):
    return s.encode() if isinstance(s, str) else s

def _str(s):  # 2-byte length + bytes, §1.5.3
    s = _bytes(s)
    return bytes((len(s) >> 8, len(s) & 255)) + s

def _vbi(n):  # Variable Byte Integer, §2.2.3: 7 bits a byte, low first
    return bytes((n,)) if n < 128 else bytes((n & 127 | 128,)) + _vbi(n >> 7)

def _pkt(h, v):  # fixed header (first byte, Remaining Length) + the rest, §2.2
    return bytes((h,)) + _vbi(len(v)) + v

class MQTTClient:
    def __init__(self, client_id, server, port=1883, user=None, password=None,
                 keepalive=0, proto=4, timeout_ms=5000, max_packet=16384):
        self.client_id, self.server, self.port = client_id, server, port
        self.user, self.pswd, self.keepalive = user, password, keepalive
        self.proto, self.timeout_ms, self.max_packet = proto, timeout_ms, max_packet
        self.sock = self.cb = self.lw = self._ack = None
        self.pid, self._tx, self.clean = 0, 0, True
        self.pending = {}  # packet id -> unacked QoS 1 PUBLISH, as resent (DUP=1)

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):  # CONNECT flags, payload
        self.lw = (4 | qos << 3 | (32 if retain else 0), _str(topic) + _str(msg))

    def _send(self, b):
        while b:
            b = b[self.sock.send(b):]
        self._tx = ticks_ms()

    def _read(self, n):
        b = b""
        while len(b) < n:
            r = self.sock.recv(n - len(b))
            if not r:
                raise OSError(104)  # the server closed the connection
            b += r
        return b

    def connect(self, clean_session=True):
        self.clean = clean_session
        ai = socket.getaddrinfo(self.server, self.port, 0, socket.SOCK_STREAM)[0]
        self.sock = socket.socket(ai[0], socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout_ms / 1000)  # no read or write hangs forever
        self.sock.connect(ai[-1])
        if hasattr(socket, "TCP_NODELAY"):  # QoS 1 stalls on Nagle + delayed ACK
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f, p = (2 if clean_session else 0), _str(self.client_id)  # bit 0 is 0 [MQTT-3.1.2-3]
        if self.lw:  # [MQTT-3.1.2-9], [MQTT-3.1.2-14]
            f, p = f | self.lw[0], p + self._props() + self.lw[1]
        for bit, x in ((128, self.user), (64, self.pswd)):  # [MQTT-3.1.2-19], -21
            if x is not None:
                f, p = f | bit, p + _str(x)
        v = bytes((self.proto, f, self.keepalive >> 8, self.keepalive & 255)) + self._props()
        self._send(_pkt(0x10, b"\0\4MQTT" + v + p))  # protocol name and level [MQTT-3.1.2-1]
        h, b = self._packet(self._read(1)[0])
        if h != 0x20 or b[1]:  # first comes CONNACK [MQTT-3.2.0-1]; 0 = accepted
            raise MQTTException(b[1] if h == 0x20 else "no CONNACK")
        self._send(b"".join(self.pending.values()))  # resend, same ids [MQTT-4.4.0-1] [MQTT-2.3.1-3]
        return b[0] & 1  # session present

    def reconnect(self, attempts=50, delay_ms=100):
        for _ in range(attempts):
            self.sock.close()
            try:
                return self.connect(self.clean)
            except (OSError, MQTTException):
                time.sleep(delay_ms / 1000)
        raise MQTTException("reconnect failed")

    def disconnect(self):
        self._send(b"\xe0\0")  # the server then drops the will [MQTT-3.14.4-3]
        self.sock.close()

    def ping(self):  # the PINGRESP is read by wait_msg/check_msg
        self._send(b"\xc0\0")

    def _next_id(self):  # nonzero [MQTT-2.3.1-1], not in flight [MQTT-2.3.1-2]
        self.pid = self.pid % 65535 + 1
        return self._next_id() if self.pid in self.pending else self.pid

    def _publish(self, topic, msg, retain, qos, msg_id=None):
        pid = self._next_id() if qos else 0
        v = _str(topic) + (bytes((pid >> 8, pid & 255)) if qos else b"")
        v += self._props(b"\x26" + _str("msg-id") + _str(msg_id) if msg_id else b"")  # dedupe id
        pkt = _pkt(0x30 | qos << 1 | (1 if retain else 0), v + _bytes(msg))
        if qos:  # kept until PUBACK; resends carry DUP=1 [MQTT-3.3.1-1]
            self.pending[pid] = bytes((pkt[0] | 8,)) + pkt[1:]
        self._send(pkt)
        return pid

    def _wait(self, done):  # handle packets until done(); OSError(ETIMEDOUT) after timeout_ms
        t = ticks_ms()
        while not done():
            left = self.timeout_ms - ticks_diff(ticks_ms(), t)
            if left <= 0:
                raise OSError(110)
            self.wait_msg(left)

    def publish(self, topic, msg, retain=False, qos=0):
        # QoS 1 waits for the PUBACK; on OSError the message stays pending for reconnect().
        pid = self._publish(topic, msg, retain, qos)  # QoS 0: id 0, never pending
        self._wait(lambda: pid not in self.pending)

    def publish_stream(self, topic, msg, msg_id, retain=False, tries=10):
        # QoS 1, reconnecting until acked; one packet id (returned) and msg-id for all sends.
        try:
            pid = self._publish(topic, msg, retain, 1, msg_id)
        except OSError:
            pid = self.pid  # pending before the send failed
        for _ in range(tries):
            try:
                self._wait(lambda: pid not in self.pending)
                return pid
            except OSError:
                self.reconnect()  # which resends it
        raise MQTTException("not acknowledged")

    def _sub(self, op, topic, tail):  # SUBSCRIBE or UNSUBSCRIBE, then wait for its ack
        pid = self._next_id()
        self._send(_pkt(op, bytes((pid >> 8, pid & 255)) + self._props() + _str(topic) + tail))
        self._wait(lambda: self._ack and self._ack[1] == pid)
        if self._ack[2] >= 0x80:  # SUBACK failure, §3.9.3
            raise MQTTException(self._ack[2])

    def subscribe(self, topic, qos=0):
        self._sub(0x82, topic, bytes((qos,)))  # flags 0010 [MQTT-3.8.1-1]

    def unsubscribe(self, topic):
        self._sub(0xA2, topic, b"")  # [MQTT-3.10.1-1]

    def _props(self, pr=b""):  # an MQTT 5 property block (0x26: user property); none in 3.1.1
        return _vbi(len(pr)) + pr if self.proto == 5 else b""

    def _packet(self, h):  # the rest of a packet whose first byte is h
        n, s, d = 0, 0, 128
        while d > 127 and s < 28:  # Remaining Length: at most 4 bytes, §2.2.3
            d = self._read(1)[0]
            n, s = n | (d & 127) << s, s + 7
        if d > 127 or n > self.max_packet:
            raise MQTTException("malformed" if d > 127 else "too big")
        return h, self._read(n)

    def _skip(self, b, i):  # index just past an MQTT 5 property block at b[i] (3.1.1: none)
        n, s, d = 0, 0, (128 if self.proto == 5 else 0)
        while d > 127:
            d, i = b[i], i + 1
            n, s = n | (d & 127) << s, s + 7
        return i + n

    def wait_msg(self, ms=None):  # handle one packet; wait up to ms (None: forever)
        self.sock.settimeout(None if ms is None else ms / 1000)  # 0 = non-blocking
        try:
            b = self._read(1)
        except OSError as e:
            if e.args and e.args[0] in (11, 35, 110, 116, "timed out"):
                return None  # EAGAIN/ETIMEDOUT (CPython: "timed out"): nothing came
            raise
        finally:  # the rest of a packet must follow within timeout_ms
            self.sock.settimeout(self.timeout_ms / 1000)
        h, b = self._packet(b[0])
        t = h >> 4
        if t == 3:  # PUBLISH
            q, n = h >> 1 & 3, (b[0] << 8 | b[1]) + 2
            if q > 1:  # we never subscribe with QoS 2
                raise MQTTException("QoS 2")
            i = self._skip(b, n + 2 * q)
            if self.cb:
                self.cb(b[2:n], b[i:])
            if q:  # PUBACK with the same id [MQTT-2.3.1-6]
                self._send(b"\x40\2" + b[n:n + 2])
        elif t == 4:  # PUBACK
            self.pending.pop(b[0] << 8 | b[1], None)
        elif t == 9 or t == 11:  # SUBACK, UNSUBACK
            self._ack = (t, b[0] << 8 | b[1], b[self._skip(b, 2)] if t == 9 else 0)
        elif t == 14:  # MQTT 5: the server ends the connection
            raise OSError(104)
        return h  # the packet's first byte, or None if nothing came

    def check_msg(self):  # ping at 3/4 keepalive, inside the 1.5x grace [MQTT-3.1.2-24]
        if self.keepalive and ticks_diff(ticks_ms(), self._tx) >= self.keepalive * 750:
            self.ping()
        return self.wait_msg(0)
