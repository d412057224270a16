"""MQTT 3.1.1 interoperability scenarios with paho-mqtt (observations only; assertions are in
test/conformance/mqtt311.test.ts). Usage: python3 interop311.py PORT"""
import sys
import time

import common
from harness import Cl, cid, run, RUN

V5 = False


def client(port, name, **kw):
    return Cl(port, cid(name), v5=V5, **kw)


def basic(port):
    t = "b/%s/basic" % RUN
    c = client(port, "basic")
    granted = c.sub(t, 2)
    for q in (0, 1, 2):
        c.pub(t, "qos %d" % q, q)
    c.wait_messages(3)
    time.sleep(0.2)
    c.disconnect()
    return {"granted": granted, "messages": [(m["payload"], m["qos"]) for m in c.got()]}


def retained(port):
    base = "ret/%s" % RUN
    p = client(port, "ret-pub")
    p.pub(base + "/a", "qos 0", 0, retain=True)
    p.pub(base + "/b", "qos 1", 1, retain=True)
    p.pub(base + "/c/d", "qos 2", 2, retain=True)
    p.pub(base + "/e", "keep", 1, retain=True)
    p.pub(base + "/e", "transient", 1, retain=False)
    p.sync()
    s = client(port, "ret-sub")
    s.sub(base + "/#", 2)
    s.wait_messages(4)
    time.sleep(0.3)
    first = s.got()
    # a retained publish matching an established subscription
    p.pub(base + "/a", "live", 1, retain=True)
    s.wait_messages(len(first) + 1)
    live = s.got()[len(first):]
    # clear every retained message of this scenario with an empty retained payload
    n_before = len(s.got())
    for t in ("/a", "/b", "/c/d"):
        p.pub(base + t, "", 1, retain=True)
    s.wait_messages(n_before + 3, timeout=2)
    cleared_live = s.got()[n_before:]
    p.sync()
    late = client(port, "ret-late")
    late.sub(base + "/#", 2)
    time.sleep(0.6)
    after_clear = late.got()
    for x in (p, s, late):
        x.disconnect()
    return {
        "first": [{k: m[k] for k in ("topic", "payload", "qos", "retain")} for m in first],
        "live": [{k: m[k] for k in ("topic", "payload", "qos", "retain")} for m in live],
        "clearedLive": [{k: m[k] for k in ("topic", "payload", "retain")} for m in cleared_live],
        "afterClear": [{k: m[k] for k in ("topic", "payload", "retain")} for m in after_clear],
    }


def will_abnormal(port):
    base = "will/%s/abn" % RUN
    w = client(port, "will-watch")
    w.sub(base + "/#", 2)
    d = client(port, "will-dying", loop=False, will={"topic": base + "/gone", "payload": "died", "qos": 1})
    r = client(port, "will-dying-ret", loop=False,
               will={"topic": base + "/retained", "payload": "died retained", "qos": 1, "retain": True})
    d.drop()
    r.drop()
    w.wait_messages(2, timeout=4)
    time.sleep(0.2)
    late = client(port, "will-late")
    late.sub(base + "/#", 1)
    time.sleep(0.5)
    out = {
        "watcher": [{k: m[k] for k in ("topic", "payload", "qos", "retain")} for m in w.got()],
        "late": [{k: m[k] for k in ("topic", "payload", "retain")} for m in late.got()],
    }
    p = client(port, "will-cleanup")
    p.pub(base + "/retained", "", 1, retain=True)
    for x in (w, late, p):
        x.disconnect()
    return out


def will_normal(port):
    base = "will/%s/norm" % RUN
    w = client(port, "willn-watch")
    w.sub(base + "/#", 2)
    d = client(port, "willn-leaving", will={"topic": base + "/gone", "payload": "must not appear", "qos": 1})
    d.pub(base + "/alive", "hello", 1)
    d.disconnect()
    time.sleep(1.5)
    w.disconnect()
    return {"watcher": [(m["topic"], m["payload"]) for m in w.got()]}


def will_keepalive(port):
    """Paho's test_will_message: a client that stops talking is cut off after 1.5 x keepalive and its
    will is published."""
    base = "will/%s/ka" % RUN
    w = client(port, "willka-watch")
    w.sub(base + "/#", 2)
    t0 = time.time()
    d = client(port, "willka-silent", loop=False, keepalive=2,
               will={"topic": base + "/gone", "payload": "timed out", "qos": 1})
    t_connected = time.time()
    # no loop() calls from now on: no PINGREQ, the socket stays open
    w.wait_messages(1, timeout=6)
    got = w.got()
    w.disconnect()
    try:
        d.c.socket().close()
    except Exception:
        pass
    return {"messages": [(m["topic"], m["payload"]) for m in got],
            "afterSeconds": round(got[0]["t"] - t_connected, 2) if got else None}


def offline_queueing(port):
    base = "off/%s" % RUN
    o = client(port, "offline", clean=False)
    o.sub(base + "/#", 2)
    o.disconnect()
    p = client(port, "offline-pub")
    p.pub(base + "/q0", "qos 0", 0)
    p.pub(base + "/q1", "qos 1", 1)
    p.pub(base + "/q2", "qos 2", 2)
    p.sync()
    p.disconnect()
    o2 = client(port, "offline", clean=False)
    o2.wait_messages(3, timeout=1.5)
    time.sleep(0.2)
    got = o2.got()
    sp = o2.connack["sessionPresent"]
    o2.disconnect()
    # leave no session behind
    client(port, "offline", clean=True).disconnect()
    return {"sessionPresent": sp, "messages": [(m["payload"], m["qos"]) for m in got]}


def overlapping(port):
    """Paho's case (two wildcard filters), then the same with an exact filter at QoS 0 added."""
    out = {}
    for case, extra in (("two", False), ("three", True)):
        base = "ovl/%s/%s" % (RUN, case)
        c = client(port, "overlap-" + case)
        granted = [c.sub(base + "/#", 2), c.sub(base + "/+", 1)]
        if extra:
            granted.append(c.sub(base + "/x", 0))
        c.pub(base + "/x", "overlapping topic filters", 2)
        c.wait_messages(3, timeout=1.2)
        time.sleep(0.2)
        out[case] = {"granted": granted, "qos": sorted(m["qos"] for m in c.got())}
        c.disconnect()
    return out


def zero_length_clientid(port):
    base = "zl/%s" % RUN
    a = Cl(port, "", v5=False, clean=True)
    b = Cl(port, "", v5=False, clean=True)
    a.sub(base, 1)
    b.sub(base, 1)
    p = client(port, "zl-pub")
    p.pub(base, "to both", 1)
    a.wait_messages(1)
    b.wait_messages(1)
    out = {"rc": [a.connack["rc"], b.connack["rc"]], "sessionPresent": [a.connack["sessionPresent"], b.connack["sessionPresent"]],
           "received": [len(a.got()), len(b.got())], "disconnected": [len(a.disconnects), len(b.disconnects)]}
    for x in (a, b, p):
        x.disconnect()
    return out


SCENARIOS = {
    "basic": basic,
    "retained": retained,
    "will_abnormal": will_abnormal,
    "will_normal": will_normal,
    "will_keepalive": will_keepalive,
    "offline_queueing": offline_queueing,
    "overlapping": overlapping,
    "dollar_topics": lambda port: common.dollar_topics(client, port),
    "unsubscribe": lambda port: common.unsubscribe(client, port),
    "wildcard_matrix": lambda port: common.wildcard_matrix(client, port),
    "qos_downgrade": lambda port: common.qos_downgrade(client, port),
    "ordering": lambda port: common.ordering(client, port),
    "zero_length_clientid": zero_length_clientid,
}

if __name__ == "__main__":
    port = int(sys.argv[1])
    only = sys.argv[2:]
    run({k: v for k, v in SCENARIOS.items() if not only or k in only}, port)
