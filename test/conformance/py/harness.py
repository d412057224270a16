"""Small harness over paho-mqtt 1.6.1 for the conformance scenarios.

A scenario is a function (port) -> dict of observations. The scripts run every scenario in its own
thread (they use distinct client ids and topics), then print one JSON object: scenario name ->
observations, or {"error": traceback}. The TypeScript tests assert on the observations, so that a
failing expectation names the spec statement it checks.
"""
import json
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCodes
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = "127.0.0.1"
RUN = "r%d" % (int(time.time() * 1000) % 100000000)

# Exceptions that end a paho network thread (for instance a PUBLISH paho cannot decode) are recorded
# and reported under "_threadErrors", so that a test can tell "nothing arrived" from "paho choked".
THREAD_ERRORS = []


def _record_thread_error(args):
    THREAD_ERRORS.append("%s: %s" % (args.exc_type.__name__, args.exc_value))


threading.excepthook = _record_thread_error


def props_to_dict(p):
    """paho Properties -> JSON-friendly dict (bytes as text, user properties as ordered pairs)."""
    if p is None:
        return {}
    out = {}
    for name in p.names.keys():
        attr = name.replace(" ", "")
        if hasattr(p, attr):
            v = getattr(p, attr)
            if attr == "CorrelationData":
                v = bytes(v).hex()
            elif isinstance(v, (bytes, bytearray)):
                v = bytes(v).decode("utf-8", "replace")
            elif attr == "UserProperty":
                v = [list(kv) for kv in v]
            out[attr] = v
    return out


def make_props(ptype, **kw):
    p = Properties(ptype)
    for k, v in kw.items():
        if k == "UserProperty":
            for pair in v:
                p.UserProperty = tuple(pair)
        else:
            setattr(p, k, v)
    return p


def wait_until(pred, timeout=3.0, step=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Cl:
    """A paho client that records what it receives."""

    def __init__(self, port, client_id, v5=False, clean=True, keepalive=60, props=None, will=None,
                 loop=True, clean_start=None):
        self.v5 = v5
        self.messages = []
        self.connacks = []
        self.subacks = {}
        self.unsubacks = {}
        self.disconnects = []
        self.published = set()
        self.lock = threading.Lock()
        if v5:
            self.c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        else:
            self.c = mqtt.Client(client_id=client_id, clean_session=clean, protocol=mqtt.MQTTv311,
                                 reconnect_on_failure=False)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_disconnect = self._on_disconnect
        self.c.on_publish = self._on_publish
        if will:
            wp = None
            if v5 and will.get("props"):
                wp = make_props(PacketTypes.WILLMESSAGE, **will["props"])
            self.c.will_set(will["topic"], will.get("payload", ""), will.get("qos", 0), will.get("retain", False),
                            properties=wp)
        self.looping = loop
        if v5:
            cp = make_props(PacketTypes.CONNECT, **props) if props else None
            cs = clean_start if clean_start is not None else True
            self.c.connect(HOST, port, keepalive, clean_start=cs, properties=cp)
        else:
            self.c.connect(HOST, port, keepalive)
        if loop:
            self.c.loop_start()
            ok = wait_until(lambda: len(self.connacks) > 0, 5)
        else:
            deadline = time.time() + 5
            while not self.connacks and time.time() < deadline:
                self.c.loop(0.05)
            ok = bool(self.connacks)
        if not ok:
            raise RuntimeError("no CONNACK for %r" % client_id)

    # callbacks
    def _on_connect(self, c, u, flags, rc, properties=None):
        rcv = rc.value if hasattr(rc, "value") else rc
        self.connacks.append({"rc": rcv, "sessionPresent": bool(flags.get("session present")),
                              "props": props_to_dict(properties)})

    def _on_message(self, c, u, m):
        with self.lock:
            self.messages.append({
                "topic": m.topic, "payload": m.payload.decode("utf-8", "replace"), "qos": m.qos,
                "retain": bool(m.retain), "dup": bool(m.dup),
                "props": props_to_dict(getattr(m, "properties", None)) if self.v5 else {},
                "t": time.time(),
            })

    def _on_subscribe(self, c, u, mid, granted, properties=None):
        self.subacks[mid] = [g.value if hasattr(g, "value") else g for g in granted]

    def _on_unsubscribe(self, c, u, mid, properties=None, reasons=None):
        if isinstance(reasons, list):
            self.unsubacks[mid] = [r.value if hasattr(r, "value") else r for r in reasons]
        elif reasons is not None:
            self.unsubacks[mid] = [reasons.value if hasattr(reasons, "value") else reasons]
        else:
            self.unsubacks[mid] = []

    def _on_disconnect(self, c, u, rc, properties=None):
        self.disconnects.append(rc.value if hasattr(rc, "value") else rc)

    def _on_publish(self, c, u, mid):
        self.published.add(mid)

    # actions
    @property
    def connack(self):
        return self.connacks[0]

    def sub(self, topic, qos=0, nl=False, rap=False, rh=0, sid=None, timeout=3):
        """Subscribes one filter (or a list of (filter, qos) for 3.1.1); returns the SUBACK codes."""
        props = None
        if sid is not None:
            props = make_props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sid)
        if self.v5:
            if isinstance(topic, list):
                arg = [(t, SubscribeOptions(qos=q)) for t, q in topic]
                rc, mid = self.c.subscribe(arg, properties=props)
            else:
                rc, mid = self.c.subscribe(topic, options=SubscribeOptions(qos=qos, noLocal=nl, retainAsPublished=rap,
                                                                           retainHandling=rh), properties=props)
        else:
            rc, mid = self.c.subscribe(topic, qos)
        if not wait_until(lambda: mid in self.subacks, timeout):
            return None
        return self.subacks[mid]

    def unsub(self, topic, timeout=3):
        rc, mid = self.c.unsubscribe(topic)
        if not wait_until(lambda: mid in self.unsubacks, timeout):
            return None
        return self.unsubacks[mid]

    def pub(self, topic, payload, qos=0, retain=False, wait=True, **props):
        p = make_props(PacketTypes.PUBLISH, **props) if (self.v5 and props) else None
        info = self.c.publish(topic, payload, qos, retain, properties=p)
        if wait and qos > 0:
            wait_until(lambda: info.is_published(), 5)
        return info

    def wait_messages(self, n, timeout=3.0, pred=None):
        def count():
            with self.lock:
                return len([m for m in self.messages if pred is None or pred(m)])
        wait_until(lambda: count() >= n, timeout)
        return self.got(pred)

    def got(self, pred=None):
        with self.lock:
            return [dict(m) for m in self.messages if pred is None or pred(m)]

    def sync(self, timeout=3.0):
        """Round trip through the server: a QoS 1 publish to a topic nobody subscribes to."""
        self.pub("sync/" + RUN + "/" + str(id(self)), "", 1)

    def disconnect(self, reason=None, **props):
        if self.v5:
            rc = ReasonCodes(PacketTypes.DISCONNECT, identifier=reason) if reason is not None else None
            dp = make_props(PacketTypes.DISCONNECT, **props) if props else None
            self.c.disconnect(reasoncode=rc, properties=dp)
        else:
            self.c.disconnect()
        if self.looping:
            self.c.loop_stop()
        else:
            for _ in range(5):
                self.c.loop(0.02)

    def drop(self):
        """Closes the TCP connection without DISCONNECT."""
        if self.looping:
            # stop the network thread first, so paho does not notice and send anything
            self.c._thread_terminate = True
        s = self.c.socket()
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        if self.looping:
            self.c.loop_stop()


def cid(name):
    return "%s-%s" % (name, RUN)


def run(scenarios, port):
    results = {}

    def one(name, fn):
        t0 = time.time()
        try:
            r = fn(port)
        except Exception:
            r = {"error": traceback.format_exc()}
        r["_seconds"] = round(time.time() - t0, 2)
        return name, r

    with ThreadPoolExecutor(max_workers=len(scenarios)) as ex:
        futures = [ex.submit(one, n, f) for n, f in scenarios.items()]
        for f in futures:
            n, r = f.result()
            results[n] = r
    results["_threadErrors"] = THREAD_ERRORS
    print(json.dumps(results))
    sys.stdout.flush()
