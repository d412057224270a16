"""MQTT 5 sessions resumed the way paho-mqtt resumes them: Clean Start 0 and no CONNECT properties.

Run against edgebus and against Debian's mosquitto by test/mqtt/session-resume.test.ts:
  session_resume.py PORT  ->  one JSON object, scenario name -> observations.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "conformance", "py"))
from harness import Cl, cid, run, RUN, wait_until  # noqa: E402


def received(c, topic_prefix):
    return sorted([[m["topic"], m["payload"], m["qos"], m["props"].get("MessageExpiryInterval")]
                   for m in c.got(lambda m: m["topic"].startswith(topic_prefix))])


def resume_and_collect(port, name, base, expected):
    """Reconnects `name` with Clean Start 0 and no properties; a marker published after the CONNACK
    bounds the wait for what the session kept (the queue is sent before it)."""
    a = Cl(port, name, v5=True, clean_start=False)
    pub = Cl(port, cid("pub-" + name), v5=True)
    pub.pub(base + "/marker", "marker", 1)
    is_marker = lambda m: m["topic"] == base + "/marker"  # noqa: E731
    wait_until(lambda: len(a.got(is_marker)) > 0
               and len(a.got(lambda m: m["topic"].startswith(base) and not is_marker(m))) >= expected, 5)
    got = [m for m in received(a, base) if m[1] != "marker"]
    marker = len(a.got(is_marker)) > 0
    a.disconnect()
    pub.disconnect()
    # the resumed connection set no Session Expiry Interval: its session ends with it [MQTT-3.1.2-11]
    again = Cl(port, name, v5=True, clean_start=False)
    after = again.connack["sessionPresent"]
    again.disconnect()
    return a.connack, got, marker, after


def no_expiry_on_resume(port):
    """Clean Start 1 + Session Expiry 99999, subscribe, go; QoS 0/1/2 published; back with Clean Start 0, no properties."""
    name = cid("resume")
    base = "x/" + RUN + "-r"
    a = Cl(port, name, v5=True, clean_start=True, props={"SessionExpiryInterval": 99999})
    granted = a.sub("x/+/+", 2)
    a.disconnect()
    b = Cl(port, cid("resume-pub"), v5=True)
    for q in (0, 1, 2):
        b.pub(base + "/q%d" % q, "qos %d" % q, q)
    b.disconnect()
    connack, got, marker, after = resume_and_collect(port, name, base, 2)
    return {"granted": granted, "connack": connack, "got": got, "marker": marker, "sessionPresentAfter": after}


def disconnect_raised_expiry(port):
    """Session Expiry 1 at CONNECT raised to 99999 by the DISCONNECT; queued messages with Message
    Expiry 1 s (gone by the resume) and 6 s (delivered with what is left). The same filter as the
    other scenario, which runs at the same time: each session queues the other's messages too, so
    a resume acknowledges several QoS 2 deliveries at once (persistence.enabled false lost one)."""
    name = cid("raised")
    base = "x/" + RUN + "-e"
    a = Cl(port, name, v5=True, clean_start=True, props={"SessionExpiryInterval": 1})
    granted = a.sub("x/+/+", 2)
    a.disconnect(SessionExpiryInterval=99999)
    b = Cl(port, cid("raised-pub"), v5=True)
    b.pub(base + "/plain", "plain", 1)
    b.pub(base + "/short", "short", 1, MessageExpiryInterval=1)
    b.pub(base + "/long", "long", 2, MessageExpiryInterval=6)
    b.disconnect()
    # time under test: past the CONNECT's 1 s session expiry and the short message's 1 s expiry
    time.sleep(2.2)
    connack, got, marker, after = resume_and_collect(port, name, base, 2)
    return {"granted": granted, "connack": connack, "got": got, "marker": marker, "sessionPresentAfter": after}


if __name__ == "__main__":
    run({"no_expiry_on_resume": no_expiry_on_resume, "disconnect_raised_expiry": disconnect_raised_expiry}, int(sys.argv[1]))
