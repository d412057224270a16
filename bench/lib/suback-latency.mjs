// SUBSCRIBE to SUBACK latency (issue 16): how soon a broker answers a subscription.
//
//   node bench/lib/suback-latency.mjs '{"port":1883,"rate":1000,"seconds":5,"firsts":200}'
//   -> one JSON line: { ok, later_us: { p50, p99, n }, first_us: { p50, p99, n } }
//
// later: SUBSCRIBEs paced at `rate` per second, each to a new filter, over connections that are
// already subscribed (at most 500 filters each, under edgebus' default limits.maxSubscriptions);
// first: `firsts` new connections one after the other, each timed from its first SUBSCRIBE (sent
// once the CONNACK is in) to the SUBACK. Raw MQTT 3.1.1, no client library; the clock is
// process.hrtime. The connection setup is not timed.
import net from 'node:net';
import { packet, utf8 } from './mqtt-session.mjs';

const PER_CONNECTION = 500;

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(us) {
  const s = [...us].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), n: s.length };
}

/** A raw connection: connect() resolves at CONNACK; subscribe(id, filter) resolves at its SUBACK with the microseconds it took. */
function open(port, clientId) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.setNoDelay(true);
    const waiting = new Map();
    let connected = false;
    let rest = Buffer.alloc(0);
    sock.on('error', reject);
    sock.on('data', (d) => {
      rest = rest.length ? Buffer.concat([rest, d]) : d;
      let o = 0;
      while (o + 2 <= rest.length) {
        let len = 0; let mul = 1; let i = o + 1;
        for (; i < rest.length; i++) { len += (rest[i] & 0x7f) * mul; mul *= 128; if ((rest[i] & 0x80) === 0) break; }
        if (i >= rest.length || i + 1 + len > rest.length) break;
        const type = rest[o] >> 4;
        const body = rest.subarray(i + 1, i + 1 + len);
        if (type === 2 && !connected) {
          connected = true;
          resolve(conn);
        } else if (type === 9) {
          const w = waiting.get(body.readUInt16BE(0));
          if (w) { waiting.delete(body.readUInt16BE(0)); w(Number(process.hrtime.bigint() - w.t0) / 1000); }
        }
        o = i + 1 + len;
      }
      rest = rest.subarray(o);
    });
    const conn = {
      subscribe(id, filter) {
        return new Promise((res) => {
          res.t0 = process.hrtime.bigint();
          waiting.set(id, res);
          sock.write(packet(0x82, Buffer.concat([Buffer.from([id >> 8, id & 0xff]), utf8(filter), Buffer.from([0])])));
        });
      },
      close() { sock.destroy(); },
    };
    sock.once('connect', () => sock.write(packet(0x10, Buffer.concat([utf8('MQTT'), Buffer.from([4, 0x02, 0, 0]), utf8(clientId)]))));
  });
}

async function main() {
  const spec = JSON.parse(process.argv[2] || '{}');
  const { port, rate = 1000, seconds = 5, firsts = 200 } = spec;
  const run = `${process.pid}-${Date.now() % 1e6}`;
  // first SUBSCRIBE of a connection
  const first = [];
  for (let i = 0; i < firsts; i++) {
    const c = await open(port, `bench-suback-first-${run}-${i}`);
    first.push(await c.subscribe(1, `bench/suback/first/${i}`));
    c.close();
  }
  // later SUBSCRIBEs, paced
  const count = Math.max(1, Math.round(rate * seconds));
  const conns = [];
  for (let i = 0; i < Math.ceil(count / PER_CONNECTION); i++) {
    const c = await open(port, `bench-suback-${run}-${i}`);
    await c.subscribe(1, `bench/suback/warm/${i}`); // its first SUBSCRIBE is not the one timed here
    conns.push(c);
  }
  const later = [];
  const pending = [];
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const due = start + BigInt(Math.round((i * 1e9) / rate));
    while (process.hrtime.bigint() < due) await new Promise((r) => setImmediate(r));
    const c = conns[Math.floor(i / PER_CONNECTION)];
    pending.push(c.subscribe(2 + (i % PER_CONNECTION), `bench/suback/${run}/${i}`).then((us) => later.push(us)));
  }
  await Promise.all(pending);
  for (const c of conns) c.close();
  process.stdout.write(`${JSON.stringify({ ok: true, rate, first_us: summary(first), later_us: summary(later) })}\n`);
  process.exit(0);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ ok: false, error: err.message })}\n`);
  process.exit(1);
});
