# Subscriber, the Python twin of c/examples/sub.c:
#   sub.py HOST PORT FILTER COUNT [PROTO]
# prints "topic payload" per message and exits after COUNT; says "subscribed" on
# stderr once the SUBACK is in. PROTO 5 connects with MQTT 5.
import sys
import edgebus

host, port, filt, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
proto = int(sys.argv[5]) if len(sys.argv) > 5 else 4
got = []


def on_message(topic, msg):
    print(topic.decode(), msg.decode())
    got.append(topic)


c = edgebus.MQTTClient("eb-pysub-%d" % (edgebus.ticks_ms() % 100000), host, port, keepalive=30, proto=proto)
c.set_callback(on_message)
c.connect()
c.subscribe(filt, 1)
print("subscribed", file=sys.stderr)
while len(got) < count:
    c.wait_msg()
c.disconnect()
