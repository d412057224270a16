// A replay reader for the benchmark: one raw MQTT 3.1.1 connection that subscribes to edgebus'
// `$replay/<stream>/<start>/<filter>` (docs/streams-mqtt.md) and counts what arrives.
//
//   const r = await readMqttReplay({ port, filter: '$replay/bench/all/#', qos: 1, expect: 250000 })
//   // { ok, received, payload_bytes, wire_bytes, seconds, first_msg_ms, ... }
//
// It has to be much faster than the server it measures, so it uses no client library, never
// turns a topic into a string and never copies a payload: it walks each chunk the socket hands
// over frame by frame (fixed header, remaining length, topic length, packet id) and skips the rest.
// A frame whose body continues in the next chunk is remembered as "bytes still to skip"; only a
// frame whose head (up to the packet id) is split is glued to the next chunk. With QoS 1 every
// PUBACK owed for a chunk goes out in one write (edgebus keeps at most 256 unacked per
// subscription, so the acks of a chunk are what lets it go on).
import net from 'node:net';
import { packet, utf8, varint } from './mqtt-session.mjs';
import { SplitReads } from './split-reads.mjs';


/**
 * Subscribe to `filter` at `qos` and count PUBLISHes until `expect` have arrived (or timeoutMs).
 * The clock runs from the SUBSCRIBE (written once the CONNACK is in) to the last expected
 * PUBLISH; connection setup is not in it. payload_bytes are application payload only (topic,
 * packet id and MQTT headers are in wire_bytes). onStart() is called as the clock starts (the
 * reader CLI samples CPU counters there).
 */
export function readMqttReplay({ host = '127.0.0.1', port, filter, qos = 0, expect, timeoutMs = 60000, clientId = 'bench-replay', onStart }) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    sock.setNoDelay(true); // PUBACK batches must not wait for Nagle
    let received = 0;
    let payloadBytes = 0;
    let wireBytes = 0;
    let chunks = 0;
    let ackWrites = 0;
    let t0 = 0n;
    let tFirst = 0n;
    let subscribed = false;
    const reads = new SplitReads(); // frames that straddle reads
    let firstTopic = null;
    let done = false;
    const pids = [];

    const finish = (error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const t1 = process.hrtime.bigint();
      const seconds = t0 ? Number(t1 - t0) / 1e9 : 0;
      // DISCONNECT, then let go: the replay subscription ends with the connection
      if (!sock.destroyed) sock.end(Buffer.from([0xe0, 0]));
      setTimeout(() => sock.destroy(), 200).unref();
      resolve({
        ok: !error,
        ...(error ? { error } : {}),
        transport: 'mqtt',
        qos,
        expected: expect,
        received,
        payload_bytes: payloadBytes,
        wire_bytes: wireBytes,
        seconds,
        first_msg_ms: tFirst ? Number(tFirst - t0) / 1e6 : null,
        chunks,
        ack_writes: ackWrites,
        first_topic: firstTopic,
      });
    };
    const timer = setTimeout(() => finish(`${received} of ${expect} messages within ${timeoutMs} ms`), timeoutMs);
    sock.on('error', (err) => finish(`mqtt ${host}:${port}: ${err.message}`));
    sock.on('close', () => finish(`connection closed after ${received} of ${expect} messages`));

    sock.on('data', (chunk) => {
      if (done) return;
      wireBytes += chunk.length;
      chunks++;
      const from = reads.next(chunk);
      if (from === null) return;
      const buf = from.buf;
      let off = from.off;
      const len = buf.length;
      while (off < len) {
        // fixed header: type/flags, remaining length (1..4 bytes)
        const h = buf[off];
        let i = off + 1;
        let rem = 0;
        let mul = 1;
        let complete = false;
        while (i < len && i <= off + 4) {
          const d = buf[i++];
          rem += (d & 0x7f) * mul;
          mul *= 128;
          if (!(d & 0x80)) { complete = true; break; }
        }
        if (!complete) { reads.tail = buf.subarray(off); break; }
        const end = i + rem;
        if (h >> 4 === 3) { // PUBLISH
          const q = (h >> 1) & 3;
          if (len < i + 2) { reads.tail = buf.subarray(off); break; }
          const tl = (buf[i] << 8) | buf[i + 1];
          const pidAt = i + 2 + tl;
          if (q && len < pidAt + 2) { reads.tail = buf.subarray(off); break; }
          if (received === 0) {
            tFirst = process.hrtime.bigint();
            if (len >= pidAt) firstTopic = buf.toString('utf8', i + 2, pidAt); // once, for the record
          }
          received++;
          payloadBytes += rem - 2 - tl - (q ? 2 : 0);
          if (q) pids.push((buf[pidAt] << 8) | buf[pidAt + 1]);
        } else {
          // anything else is small and rare: wait for all of it
          if (end > len) { reads.tail = buf.subarray(off); break; }
          const type = h >> 4;
          if (type === 2) { // CONNACK
            if (rem < 2 || buf[i + 1] !== 0) { finish(`CONNACK refused (code ${buf[i + 1]})`); return; }
            if (!subscribed) {
              subscribed = true;
              t0 = process.hrtime.bigint();
              onStart?.();
              sock.write(packet(0x82, Buffer.concat([Buffer.from([0, 1]), utf8(filter), Buffer.from([qos])])));
            }
          } else if (type === 9) { // SUBACK
            if (buf[i + 2] >= 0x80) { finish(`SUBSCRIBE ${filter} refused (SUBACK 0x${buf[i + 2].toString(16)})`); return; }
          }
          // PINGRESP and the like: nothing to do
        }
        if (end <= len) off = end;
        else { reads.skip = end - len; off = len; }
      }
      if (pids.length) {
        const acks = Buffer.allocUnsafe(pids.length * 4);
        for (let k = 0, o = 0; k < pids.length; k++, o += 4) {
          acks[o] = 0x40;
          acks[o + 1] = 2;
          acks[o + 2] = pids[k] >> 8;
          acks[o + 3] = pids[k] & 0xff;
        }
        pids.length = 0;
        sock.write(acks);
        ackWrites++;
      }
      if (received >= expect) finish(null);
    });

    sock.once('connect', () => {
      // clean session, keepalive 0: the read is timed, no PINGREQs in it
      const body = Buffer.concat([utf8('MQTT'), Buffer.from([4, 0x02, 0, 0]), utf8(clientId)]);
      sock.write(packet(0x10, body));
    });
  });
}
