# Telemetry publisher, the Python twin of c/examples/pub.c:
#   pub.py HOST PORT TOPIC COUNT QOS [PROTO]
# publishes COUNT messages ("0", "1", ...); QoS 1 goes through publish_stream, so a
# lost connection is reopened and the unacked message resent with its packet id.
# PROTO 5 also sends each message's dedupe id as the `msg-id` user property.
import sys
import edgebus


class Client(edgebus.MQTTClient):
    reconnects = 0

    def reconnect(self, *args):
        self.reconnects += 1
        return super().reconnect(*args)


host, port, topic, count, qos = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
proto = int(sys.argv[6]) if len(sys.argv) > 6 else 4
cid = "eb-pypub-%d" % (edgebus.ticks_ms() % 100000)
c = Client(cid, host, port, keepalive=30, proto=proto, timeout_ms=2000)
c.connect()
for i in range(count):
    if qos:
        c.publish_stream(topic, str(i), "%s-%d" % (cid, i))
    else:
        c.publish(topic, str(i))
c.disconnect()
print("published %d reconnects %d" % (count, c.reconnects), file=sys.stderr)
