"""MQTT 5.0 interoperability scenarios with paho-mqtt (observations only; assertions are in
test/conformance/mqtt5.test.ts). Usage: python3 interop5.py PORT [SCENARIO...]"""
import sys
import time

import common
from harness import Cl, cid, run, wait_until, RUN

def client(port, name, **kw):
    return Cl(port, cid(name), v5=True, **kw)


def brief(m, *keys):
    return {k: m[k] for k in keys}


def basic(port):
    t = "b/%s/basic" % RUN
    c = client(port, "basic")
    granted = c.sub(t, 2)
    for q in (0, 1, 2):
        c.pub(t, "qos %d" % q, q)
    c.wait_messages(3)
    time.sleep(0.2)
    c.disconnect()
    return {"connackRc": c.connack["rc"], "granted": granted, "messages": [(m["payload"], m["qos"]) for m in c.got()]}


def retained(port):
    base = "ret/%s" % RUN
    ups = [["a", "2"], ["c", "3"]]
    p = client(port, "ret-pub")
    p.pub(base + "/a", "qos 0", 0, retain=True, UserProperty=ups)
    p.pub(base + "/b", "qos 1", 1, retain=True, UserProperty=ups)
    p.pub(base + "/c/d", "qos 2", 2, retain=True, UserProperty=ups)
    p.sync()
    s = client(port, "ret-sub")
    granted = s.sub(base + "/#", 2)
    s.wait_messages(3)
    time.sleep(0.3)
    first = s.got()
    n = len(first)
    for t in ("/a", "/b", "/c/d"):
        p.pub(base + t, "", 1, retain=True)
    s.wait_messages(n + 3, timeout=2)
    cleared_live = s.got()[n:]
    late = client(port, "ret-late")
    late.sub(base + "/#", 2)
    time.sleep(0.6)
    out = {
        "granted": granted,
        "first": [dict(brief(m, "topic", "payload", "qos", "retain"), userProperty=m["props"].get("UserProperty")) for m in first],
        "clearedLive": [brief(m, "topic", "payload", "retain") for m in cleared_live],
        "afterClear": [brief(m, "topic", "payload") for m in late.got()],
    }
    for x in (p, s, late):
        x.disconnect()
    return out


def subscribe_options(port):
    """Retain Handling 0/1/2 and Retain As Published 0/1."""
    base = "so/%s" % RUN
    p = client(port, "so-pub")
    p.pub(base + "/state", "retained-1", 1, retain=True)
    p.sync()
    out = {}
    # Retain Handling 0: retained on every subscribe, also when the subscription already exists
    c0 = client(port, "so-rh0")
    c0.sub(base + "/#", 1, rh=0)
    c0.wait_messages(1)
    c0.sub(base + "/#", 1, rh=0)
    c0.wait_messages(2, timeout=1.5)
    out["rh0"] = [brief(m, "payload", "retain") for m in c0.got()]
    # Retain Handling 1: retained only when the subscription is new
    c1 = client(port, "so-rh1")
    c1.sub(base + "/#", 1, rh=1)
    c1.wait_messages(1)
    c1.sub(base + "/#", 1, rh=1)
    time.sleep(0.6)
    out["rh1"] = [brief(m, "payload", "retain") for m in c1.got()]
    # Retain Handling 2: never
    c2 = client(port, "so-rh2")
    c2.sub(base + "/#", 1, rh=2)
    time.sleep(0.6)
    out["rh2"] = [brief(m, "payload", "retain") for m in c2.got()]
    # Retain As Published: live retained publish to established subscriptions
    rap0 = client(port, "so-rap0")
    rap0.sub(base + "/#", 1, rap=False, rh=2)
    rap1 = client(port, "so-rap1")
    rap1.sub(base + "/#", 1, rap=True, rh=2)
    p.pub(base + "/state", "retained-2", 1, retain=True)
    p.pub(base + "/state2", "not-retained", 1, retain=False)
    rap0.wait_messages(2)
    rap1.wait_messages(2)
    out["rap0"] = [brief(m, "payload", "retain") for m in rap0.got()]
    out["rap1"] = [brief(m, "payload", "retain") for m in rap1.got()]
    p.pub(base + "/state", "", 1, retain=True)
    for x in (p, c0, c1, c2, rap0, rap1):
        x.disconnect()
    return out


def will_abnormal(port):
    base = "will/%s/abn" % RUN
    w = client(port, "will-watch")
    w.sub(base + "/#", 2)
    ups = [["a", "2"], ["c", "3"], ["a", "1"]]
    d = client(port, "will-dying", loop=False,
               will={"topic": base + "/gone", "payload": "died", "qos": 1,
                     "props": {"UserProperty": ups, "ContentType": "text/plain", "ResponseTopic": base + "/reply",
                               "CorrelationData": b"corr-1", "PayloadFormatIndicator": 1}})
    d.drop()
    w.wait_messages(1, timeout=3)
    time.sleep(0.2)
    got = w.got()
    w.disconnect()
    return {"messages": [dict(brief(m, "topic", "payload", "qos", "retain"), props=m["props"]) for m in got]}


def will_normal(port):
    base = "will/%s/norm" % RUN
    w = client(port, "willn-watch")
    w.sub(base + "/#", 2)
    d0 = client(port, "willn-success", will={"topic": base + "/success", "payload": "must not appear", "qos": 1})
    d4 = client(port, "willn-withwill", will={"topic": base + "/withwill", "payload": "disconnect with will", "qos": 1})
    d0.disconnect(reason=0)
    d4.disconnect(reason=4)
    w.wait_messages(1, timeout=2)
    time.sleep(0.8)
    got = w.got()
    w.disconnect()
    return {"messages": [(m["topic"].rsplit("/", 1)[1], m["payload"]) for m in got]}


def will_delay(port):
    """Will Delay Interval [MQTT-3.1.2-8], [MQTT-3.1.3-9]."""
    base = "will/%s/delay" % RUN
    # the timings are watched by an MQTT 3.1.1 subscriber, which sees no properties; an MQTT 5 one
    # watches too (its count tells whether paho could decode the will PUBLISH)
    w = Cl(port, cid("willd-watch"), v5=False)
    w.sub(base + "/#", 2)
    w5 = client(port, "willd-watch5")
    w5.sub(base + "/#", 2)
    t0 = time.time()
    # a) delay 2 s, session 30 s: published about 2 s after the connection is lost
    a = client(port, "willd-a", loop=False, props={"SessionExpiryInterval": 30},
               will={"topic": base + "/a", "payload": "delayed", "qos": 1, "props": {"WillDelayInterval": 2}})
    # b) delay 2 s, the client comes back to its session in time: never published
    b = client(port, "willd-b", loop=False, props={"SessionExpiryInterval": 30},
               will={"topic": base + "/b", "payload": "must not appear", "qos": 1, "props": {"WillDelayInterval": 2}})
    # c) delay 2 s, the client comes back with Clean Start 1: the old session ends, so the will is published
    c = client(port, "willd-c", loop=False, props={"SessionExpiryInterval": 30},
               will={"topic": base + "/c", "payload": "session ended", "qos": 1, "props": {"WillDelayInterval": 2}})
    # d) delay 10 s but session expiry 1 s: published when the session ends
    d = client(port, "willd-d", loop=False, props={"SessionExpiryInterval": 1},
               will={"topic": base + "/d", "payload": "session expired", "qos": 1, "props": {"WillDelayInterval": 10}})
    t_drop = time.time()
    for x in (a, b, c, d):
        x.drop()
    time.sleep(0.5)
    b2 = client(port, "willd-b", props={"SessionExpiryInterval": 30}, clean_start=False)
    c2 = client(port, "willd-c", clean_start=True)
    w.wait_messages(3, timeout=4)
    time.sleep(0.8)
    got = w.got()
    out = {"messages": {m["topic"].rsplit("/", 1)[1]: round(m["t"] - t_drop, 2) for m in got},
           "v5Watcher": [dict(brief(m, "topic", "payload"), props=m["props"]) for m in w5.got()]}
    b2.disconnect(SessionExpiryInterval=0)
    c2.disconnect()
    w.disconnect()
    w5.disconnect()  # (a drop would race paho's network thread: EBADF in it)
    return out


def offline_queueing(port):
    base = "off/%s" % RUN
    o = client(port, "offline", props={"SessionExpiryInterval": 60})
    o.sub(base + "/#", 2)
    o.disconnect()
    p = client(port, "offline-pub")
    p.pub(base + "/q0", "qos 0", 0)
    p.pub(base + "/q1", "qos 1", 1)
    p.pub(base + "/q2", "qos 2", 2)
    p.sync()
    p.disconnect()
    o2 = client(port, "offline", props={"SessionExpiryInterval": 60}, clean_start=False)
    o2.wait_messages(3, timeout=1.5)
    time.sleep(0.2)
    got = o2.got()
    sp = o2.connack["sessionPresent"]
    o2.disconnect(SessionExpiryInterval=0)
    return {"sessionPresent": sp, "messages": [(m["payload"], m["qos"]) for m in got]}


def overlapping(port):
    """Paho's case (two wildcard filters), then the same with an exact filter at QoS 0 added."""
    out = {}
    for case, extra in (("two", False), ("three", True)):
        base = "ovl/%s/%s" % (RUN, case)
        c = client(port, "overlap-" + case)
        granted = [c.sub(base + "/#", 2, sid=1), c.sub(base + "/+", 1, sid=2)]
        if extra:
            granted.append(c.sub(base + "/x", 0))
        c.pub(base + "/x", "overlapping topic filters", 2)
        c.wait_messages(3, timeout=1.2)
        time.sleep(0.2)
        out[case] = {"granted": granted,
                     "copies": [{"qos": m["qos"], "sids": m["props"].get("SubscriptionIdentifier")} for m in c.got()]}
        c.disconnect()
    return out

def subscription_ids(port):
    base = "sid/%s" % RUN
    c = client(port, "sids")
    c.sub(base + "/a/#", 1, sid=7)
    c.sub(base + "/b", 1)
    c.sub(base + "/c", 1, sid=268435455)  # the largest Variable Byte Integer
    p = client(port, "sids-pub")
    p.pub(base + "/a/1", "a", 1)
    p.pub(base + "/b", "b", 1)
    p.pub(base + "/c", "c", 0)
    c.wait_messages(3)
    # replacing the subscription replaces its identifier [MQTT-3.8.4-3]
    c.sub(base + "/a/#", 1, sid=8)
    p.pub(base + "/a/2", "a2", 1)
    c.wait_messages(4)
    time.sleep(0.2)
    got = {m["payload"]: m["props"].get("SubscriptionIdentifier") for m in c.got()}
    c.disconnect()
    p.disconnect()
    return {"sids": got}


def no_local(port):
    base = "nl/%s" % RUN
    a = client(port, "nl-a")
    a.sub(base + "/t", 1, nl=True)
    b = client(port, "nl-b")
    b.sub(base + "/t", 1)
    a.pub(base + "/t", "from a", 1)
    a.pub(base + "/t", "from a qos0", 0)
    b.pub(base + "/t", "from b", 1)
    b.wait_messages(3)
    a.wait_messages(1)
    time.sleep(0.4)
    out = {"a": sorted(m["payload"] for m in a.got()), "b": sorted(m["payload"] for m in b.got())}
    a.disconnect()
    b.disconnect()
    return out


def request_response(port):
    base = "rr/%s" % RUN
    responder = client(port, "rr-responder")
    requester = client(port, "rr-requester")
    requester.sub(base + "/response", 1)
    seen = []

    def on_request(c, u, m):
        seen.append({"responseTopic": getattr(m.properties, "ResponseTopic", None),
                     "correlationData": bytes(getattr(m.properties, "CorrelationData", b"")).hex()})
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
        rp = Properties(PacketTypes.PUBLISH)
        rp.CorrelationData = m.properties.CorrelationData
        c.publish(m.properties.ResponseTopic, b"response to " + m.payload, 1, properties=rp)

    responder.c.message_callback_add(base + "/request", on_request)
    responder.sub(base + "/request", 1)
    corr = bytes([0, 1, 2, 0xfe, 0xff]) + b"id-42"
    requester.pub(base + "/request", "ping", 1, ResponseTopic=base + "/response", CorrelationData=corr)
    requester.wait_messages(1)
    time.sleep(0.2)
    got = requester.got()
    responder.disconnect()
    requester.disconnect()
    return {"requestSeen": seen, "sentCorrelationHex": corr.hex(),
            "responses": [{"topic": m["topic"], "payload": m["payload"],
                           "correlationHex": m["props"].get("CorrelationData")} for m in got]}


def user_properties(port):
    base = "up/%s" % RUN
    ups = [["a", "1"], ["b", "2"], ["a", "3"], ["c", "with space"], ["\u00fc", "\u2713"], ["empty", ""], ["a", "1"]]
    s = client(port, "up-sub")
    s.sub(base + "/#", 2)
    s3 = Cl(port, cid("up-sub311"), v5=False)
    s3.sub(base + "/#", 2)
    p = client(port, "up-pub")
    for q in (0, 1, 2):
        p.pub(base + "/q%d" % q, "q%d" % q, q, UserProperty=ups)
    s.wait_messages(3)
    s3.wait_messages(3)
    time.sleep(0.2)
    out = {"sent": ups, "received": {m["payload"]: m["props"].get("UserProperty") for m in s.got()},
           "v311Payloads": sorted(m["payload"] for m in s3.got())}
    for x in (s, s3, p):
        x.disconnect()
    return out


def payload_format(port):
    base = "pf/%s" % RUN
    s = client(port, "pf-sub")
    s.sub(base + "/#", 2)
    p = client(port, "pf-pub")
    p.pub(base + "/utf8", "h\u00e9llo", 1, PayloadFormatIndicator=1, ContentType="text/plain; charset=utf-8")
    p.pub(base + "/bytes", "raw", 2, PayloadFormatIndicator=0, ContentType="application/octet-stream")
    p.pub(base + "/q0", "{}", 0, PayloadFormatIndicator=1, ContentType="application/json")
    p.pub(base + "/none", "plain", 1)
    s.wait_messages(4)
    time.sleep(0.2)
    got = {m["topic"].rsplit("/", 1)[1]: {"pfi": m["props"].get("PayloadFormatIndicator"),
                                          "contentType": m["props"].get("ContentType"),
                                          "payload": m["payload"]} for m in s.got()}
    s.disconnect()
    p.disconnect()
    return {"received": got}


def message_expiry(port):
    base = "exp/%s" % RUN
    o = client(port, "exp-offline", props={"SessionExpiryInterval": 60})
    o.sub(base + "/q/#", 1)
    o.disconnect()
    p = client(port, "exp-pub")
    p.pub(base + "/q/short", "expires in 1 s", 1, MessageExpiryInterval=1)
    p.pub(base + "/q/long", "expires in 60 s", 1, MessageExpiryInterval=60)
    p.pub(base + "/q/none", "never expires", 1)
    p.pub(base + "/r/short", "retained 1 s", 1, retain=True, MessageExpiryInterval=1)
    p.pub(base + "/r/long", "retained 60 s", 1, retain=True, MessageExpiryInterval=60)
    # live delivery carries the interval (minus the time spent in the server, ~0)
    live = client(port, "exp-live")
    live.sub(base + "/live", 1)
    p.pub(base + "/live", "live", 1, MessageExpiryInterval=30)
    live.wait_messages(1)
    time.sleep(2.3)
    o2 = client(port, "exp-offline", props={"SessionExpiryInterval": 60}, clean_start=False)
    late = client(port, "exp-late")
    late.sub(base + "/r/#", 1)
    o2.wait_messages(2, timeout=1.5)
    late.wait_messages(1, timeout=1.5)
    time.sleep(0.3)
    out = {
        "queued": {m["payload"]: m["props"].get("MessageExpiryInterval") for m in o2.got()},
        "retained": {m["payload"]: m["props"].get("MessageExpiryInterval") for m in late.got()},
        "live": [m["props"].get("MessageExpiryInterval") for m in live.got()],
    }
    p.pub(base + "/r/long", "", 1, retain=True)
    o2.disconnect(SessionExpiryInterval=0)
    for x in (p, live, late):
        x.disconnect()
    return out


def shared(port):
    base = "sh/%s" % RUN
    g = "grp%s" % RUN
    m1 = client(port, "sh-m1")
    m2 = client(port, "sh-m2")
    m3 = client(port, "sh-m3")
    other = client(port, "sh-g2")
    plain = client(port, "sh-plain")
    granted = [m1.sub("$share/%s/%s/#" % (g, base), 1), m2.sub("$share/%s/%s/#" % (g, base), 1),
               m3.sub("$share/%s/%s/+" % (g, base), 1), other.sub("$share/%s2/%s/#" % (g, base), 1),
               plain.sub(base + "/#", 1)]
    p = client(port, "sh-pub")
    n = 30
    for i in range(n):
        p.pub(base + "/t", str(i), 1, wait=False)
    p.sync()
    plain.wait_messages(n)
    other.wait_messages(n)
    wait_until(lambda: len(m1.got()) + len(m2.got()) + len(m3.got()) >= n, 3)
    time.sleep(0.3)
    out = {
        "granted": granted,
        "members": [sorted(int(m["payload"]) for m in x.got()) for x in (m1, m2, m3)],
        "otherGroup": sorted(int(m["payload"]) for m in other.got()),
        "plain": sorted(int(m["payload"]) for m in plain.got()),
        "topics": sorted(set(m["topic"] for x in (m1, m2, m3, other) for m in x.got())),
        "n": n,
    }
    for x in (m1, m2, m3, other, plain, p):
        x.disconnect()
    return out


def assigned_clientid(port):
    a = Cl(port, "", v5=True, clean_start=True)
    b = Cl(port, "", v5=True, clean_start=False)
    named = client(port, "named")
    base = "aci/%s" % RUN
    a.sub(base, 1)
    b.sub(base, 1)
    named.pub(base, "to both", 1)
    a.wait_messages(1)
    b.wait_messages(1)
    out = {
        "rc": [a.connack["rc"], b.connack["rc"], named.connack["rc"]],
        "assigned": [a.connack["props"].get("AssignedClientIdentifier"), b.connack["props"].get("AssignedClientIdentifier")],
        "namedAssigned": named.connack["props"].get("AssignedClientIdentifier"),
        "received": [len(a.got()), len(b.got())],
    }
    for x in (a, b, named):
        x.disconnect()
    return out


SCENARIOS = {
    "basic": basic,
    "retained": retained,
    "subscribe_options": subscribe_options,
    "will_abnormal": will_abnormal,
    "will_normal": will_normal,
    "will_delay": will_delay,
    "offline_queueing": offline_queueing,
    "overlapping": overlapping,
    "subscription_ids": subscription_ids,
    "no_local": no_local,
    "request_response": request_response,
    "user_properties": user_properties,
    "payload_format": payload_format,
    "message_expiry": message_expiry,
    "shared": shared,
    "assigned_clientid": assigned_clientid,
    "dollar_topics": lambda port: common.dollar_topics(client, port),
    "unsubscribe": lambda port: common.unsubscribe(client, port),
    "wildcard_matrix": lambda port: common.wildcard_matrix(client, port),
    "qos_downgrade": lambda port: common.qos_downgrade(client, port),
    "ordering": lambda port: common.ordering(client, port),
}

if __name__ == "__main__":
    port = int(sys.argv[1])
    only = sys.argv[2:]
    run({k: v for k, v in SCENARIOS.items() if not only or k in only}, port)
