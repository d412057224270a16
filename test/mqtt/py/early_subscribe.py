"""A SUBSCRIBE, then another client's QoS 1 PUBLISH without waiting for the SUBACK, as paho-mqtt
clients do it. Run by test/mqtt/early-subscriptions.test.ts against edgebus and mosquitto:
  early_subscribe.py PORT  ->  one JSON object, scenario name -> observations.

The clients run without paho's network thread, so a call writes its packet before it returns: the
SUBSCRIBE is on the wire 5 ms before the PUBLISH, whatever the threads of the process do.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "conformance", "py"))
from harness import Cl, cid, run, RUN  # noqa: E402
from paho.mqtt.subscribeoptions import SubscribeOptions  # noqa: E402

RUNS = 20
AHEAD = 0.005  # see early-subscriptions.test.ts


def pump(clients, pred, timeout=5.0):
    deadline = time.time() + timeout
    while not pred() and time.time() < deadline:
        for c in clients:
            c.c.loop(0.005)
    return pred()


def client(port, name, v5):
    return Cl(port, cid(name), v5=v5, loop=False)


def delivered_before_marker(sub, pub, topic, payload):
    """Whether `sub` got `payload` before the marker `pub` sends after the SUBACK (same publisher, same topic: in order)."""
    pub.c.publish(topic, "marker", 1)
    pump([sub, pub], lambda: any(m["topic"] == topic and m["payload"] == "marker" for m in sub.got()))
    got = [m["payload"] for m in sub.got(lambda m: m["topic"] == topic)]
    return "marker" in got and payload in got[:got.index("marker")]


def first_subscribe(port, v5):
    pub = client(port, "early-pub-%d" % v5, v5)
    delivered = 0
    for i in range(RUNS):
        topic = "early/%s/%d/%d" % (RUN, v5, i)
        sub = client(port, "early-sub-%d-%d" % (v5, i), v5)
        _, mid = sub.c.subscribe(topic, 1)
        time.sleep(AHEAD)
        pub.c.publish(topic, "first", 1)
        pump([sub, pub], lambda: mid in sub.subacks)
        if delivered_before_marker(sub, pub, topic, "first"):
            delivered += 1
        sub.disconnect()
    pub.disconnect()
    return {"delivered": delivered, "runs": RUNS}


def no_local(port):
    delivered = 0
    own = 0
    for i in range(RUNS):
        topic = "early-nl/%s/%d" % (RUN, i)
        a = client(port, "nl-a-%d" % i, True)
        b = client(port, "nl-b-%d" % i, True)
        _, ma = a.c.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
        _, mb = b.c.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
        time.sleep(AHEAD)
        a.c.publish(topic, "from a", 1)
        pump([a, b], lambda: ma in a.subacks and mb in b.subacks)
        if delivered_before_marker(b, a, topic, "from a"):
            delivered += 1
        own += len(a.got(lambda m: m["payload"] != "marker"))
        a.disconnect()
        b.disconnect()
    return {"delivered": delivered, "own": own, "runs": RUNS}


if __name__ == "__main__":
    run({
        "first_subscribe_311": lambda port: first_subscribe(port, False),
        "first_subscribe_5": lambda port: first_subscribe(port, True),
        "no_local": no_local,
    }, int(sys.argv[1]))
