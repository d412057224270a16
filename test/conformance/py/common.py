"""Scenarios that read the same in MQTT 3.1.1 and 5.0; each takes the version's client factory."""
import time

from harness import RUN

# The topic sets of the Paho interoperability suite: no other scenario publishes these names.
MATRIX_TOPICS = ["TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA", "TopicA/B/C"]
MATRIX_FILTERS = ["TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#", "+", "TopicA/+/C", "TopicA/B/C"]


def dollar_topics(client, port):
    s = client(port, "dollar-hash")
    s.sub("#", 2)
    s.sub("+/+", 2)
    s.sub("+/dollar/%s" % RUN, 2)
    sys_sub = client(port, "dollar-sys")
    sys_sub.sub("$SYS/#", 0)
    p = client(port, "dollar-pub")
    p.pub("$dollar/%s" % RUN, "dollar topic", 1)
    p.pub("$x/dollar/%s" % RUN, "dollar topic 2", 1)
    p.pub("ctl/dollar/%s" % RUN, "control", 1)
    s.wait_messages(1, timeout=3, pred=lambda m: m["topic"] == "ctl/dollar/%s" % RUN)
    sys_sub.wait_messages(1, timeout=2.5)
    time.sleep(0.3)
    got = s.got()
    out = {
        "dollarTopicsOnWildcards": sorted(set(m["topic"] for m in got if m["topic"].startswith("$"))),
        "controlSeen": len([m for m in got if m["topic"] == "ctl/dollar/%s" % RUN]),
        "sysMessagesMeanwhile": len(sys_sub.got()),
    }
    for x in (s, sys_sub, p):
        x.disconnect()
    return out


def qos_downgrade(client, port):
    base = "qd/%s" % RUN
    c = client(port, "qosdown")
    g = [c.sub(base + "/0", 0), c.sub(base + "/1", 1), c.sub(base + "/2", 2)]
    p = client(port, "qosdown-pub")
    for t in ("0", "1", "2"):
        for q in (0, 1, 2):
            p.pub(base + "/" + t, "%s-%d" % (t, q), q)
    c.wait_messages(9, timeout=2)
    time.sleep(0.2)
    got = {m["payload"]: m["qos"] for m in c.got()}
    c.disconnect()
    p.disconnect()
    return {"granted": g, "qosByPayload": got}


def wildcard_matrix(client, port):
    subs = {}
    for i, f in enumerate(MATRIX_FILTERS):
        c = client(port, "matrix-%d" % i)
        c.sub(f, 1)
        subs[f] = c
    p = client(port, "matrix-pub")
    for t in MATRIX_TOPICS:
        p.pub(t, t, 1)
    p.pub("matrix/done/" + RUN, "done", 1)
    # everything published before "done" was routed by the time "done" reaches the '#' subscriber
    subs["#"].wait_messages(1, timeout=3, pred=lambda m: m["topic"] == "matrix/done/" + RUN)
    time.sleep(0.4)
    out = {}
    for f, c in subs.items():
        got = [m["topic"] for m in c.got() if m["topic"] in MATRIX_TOPICS]
        out[f] = sorted(got)
        c.disconnect()
    p.disconnect()
    return {"received": out}


def ordering(client, port):
    base = "ord/%s" % RUN
    c = client(port, "order")
    c.sub(base + "/q1", 1)
    c.sub(base + "/q2", 2)
    c.sub(base + "/q0", 0)
    p = client(port, "order-pub")
    for i in range(40):
        p.pub(base + "/q1", str(i), 1, wait=False)
        p.pub(base + "/q2", str(i), 2, wait=False)
        p.pub(base + "/q0", str(i), 0, wait=False)
    c.wait_messages(120, timeout=5)
    time.sleep(0.2)
    got = c.got()
    c.disconnect()
    p.disconnect()
    seq = lambda suffix: [int(m["payload"]) for m in got if m["topic"].endswith(suffix)]
    return {"q0": seq("/q0"), "q1": seq("/q1"), "q2": seq("/q2")}


def unsubscribe(client, port):
    base = "uns/%s" % RUN
    c = client(port, "unsub")
    for t in ("a", "b", "c"):
        c.sub(base + "/" + t, 2)
    u1 = c.unsub(base + "/a")
    u2 = c.unsub(base + "/never-subscribed")
    p = client(port, "unsub-pub")
    for t in ("a", "b", "c"):
        p.pub(base + "/" + t, "topic " + t, 1)
    c.wait_messages(3, timeout=1.5)
    time.sleep(0.3)
    got = sorted(m["payload"] for m in c.got())
    c.disconnect()
    p.disconnect()
    # the UNSUBACKs (None: none came; MQTT 5: their reason codes) and what still arrived
    return {"unsubacks": [u1, u2], "payloads": got}
