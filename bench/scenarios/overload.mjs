// Overload rows (issue 15): what a slow consumer's disconnect costs everyone else, and whether a
// burst's memory is given back. Both drive raw MQTT 3.1.1 sockets from the harness process
// (a frozen reader must really stop reading; a burst is bytes written as fast as taken).
import net from 'node:net';
import { runLoadgen } from '../lib/loadgen.mjs';
import { freePort, rssKb, sleep } from '../lib/proc.mjs';

const num = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);

function varint(n) {
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

function packet(b0, body) {
  return Buffer.concat([Buffer.from([b0]), varint(body.length), body]);
}

const str = (s) => {
  const b = Buffer.from(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};

/** A raw MQTT 3.1.1 connection with its CONNACK; with `filter` it subscribes at `qos`, then stops reading (or, with `ack`, keeps up). */
async function rawClient(port, clientId, { filter = null, qos = 0, ack = false } = {}) {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  socket.on('error', () => {});
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  socket.write(packet(0x10, Buffer.concat([str('MQTT'), Buffer.from([4, 2, 0, 60]), str(clientId)])));
  if (filter !== null) socket.write(packet(0x82, Buffer.concat([Buffer.from([0, 1]), str(filter), Buffer.from([qos])])));
  const want = filter === null ? 4 : 9; // CONNACK (+ SUBACK)
  let got = 0;
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${clientId}: no CONNACK${filter ? '/SUBACK' : ''}`)), 5000);
    const onData = (d) => {
      got += d.length;
      if (got < want) return;
      clearTimeout(t);
      socket.off('data', onData);
      resolve();
    };
    socket.on('data', onData);
  });
  if (filter !== null && !ack) socket.pause();
  if (ack) ackEveryPublish(socket);
  return socket;
}

/** A subscriber that keeps up: every QoS 1 PUBLISH read is PUBACKed, the acks of one read in one write. */
function ackEveryPublish(socket) {
  let rest = Buffer.alloc(0);
  socket.on('data', (d) => {
    rest = rest.length ? Buffer.concat([rest, d]) : d;
    const acks = [];
    let o = 0;
    for (;;) {
      let len = 0;
      let mul = 1;
      let i = o + 1;
      for (; i < rest.length && i < o + 5; i++) {
        len += (rest[i] & 0x7f) * mul;
        mul *= 128;
        if ((rest[i] & 0x80) === 0) break;
      }
      if (i >= rest.length || o + 1 + (i - o) + len > rest.length) break;
      const body = i + 1;
      if ((rest[o] & 0xf6) === 0x32) { // PUBLISH, QoS 1
        const at = body + 2 + rest.readUInt16BE(body);
        acks.push(0x40, 0x02, rest[at], rest[at + 1]);
      }
      o = body + len;
    }
    rest = rest.subarray(o);
    if (acks.length) socket.write(Buffer.from(acks));
  });
}

function quantile(sorted, q) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] : null;
}

/**
 * A QoS 1 publisher at a fixed pace (one PUBLISH every `everyMs`, not waiting for acks): each
 * latency is its PUBACK's time minus the time it was due, so a stall counts for every message
 * that should have gone during it (no coordinated omission).
 */
async function pacedProbe(port, everyMs) {
  const socket = await rawClient(port, `probe-${process.pid}`);
  const due = new Map();
  const samples = []; // [dueAt, latencyMs]
  let id = 0;
  let rest = Buffer.alloc(0);
  socket.on('data', (d) => {
    const now = performance.now();
    rest = rest.length ? Buffer.concat([rest, d]) : d;
    let o = 0;
    while (o + 4 <= rest.length) {
      if (rest[o] === 0x40) {
        const pid = rest.readUInt16BE(o + 2);
        const at = due.get(pid);
        if (at !== undefined) { due.delete(pid); samples.push([at, now - at]); }
      }
      o += 2 + rest[o + 1];
    }
    rest = rest.subarray(o);
  });
  const start = performance.now();
  let sent = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    // every message due by now goes out now, stamped with when it was due
    for (; start + sent * everyMs <= now; sent++) {
      id = id >= 65535 ? 1 : id + 1;
      if (due.has(id)) continue; // 65,535 unacked: the broker is gone
      due.set(id, start + sent * everyMs);
      socket.write(packet(0x32, Buffer.concat([str('probe/x'), Buffer.from([id >> 8, id & 0xff, 0x70])])));
    }
  }, everyMs);
  return {
    /** p50/p99/max of the messages due in [from, to) (performance.now() times). */
    window(from, to) {
      const lat = samples.filter(([at]) => at >= from && at < to).map(([, l]) => l).sort((a, b) => a - b);
      const lost = [...due.values()].filter((at) => at >= from && at < to).length;
      return { n: lat.length, unacked: lost, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), max: lat.length ? lat[lat.length - 1] : null };
    },
    /** The largest latency of each `stepMs` of due times from `from` (where a pause sits). */
    timeline(from, to, stepMs) {
      const out = [];
      for (let t = from; t < to; t += stepMs) out.push(Math.round(this.window(t, t + stepMs).max ?? -1));
      return out;
    },
    stop() { clearInterval(timer); socket.destroy(); },
  };
}

async function slowConsumerDisconnects(broker) {
  const res = await fetch(`http://127.0.0.1:${broker.httpPort}/healthz`);
  return (await res.json()).slowConsumerDisconnects;
}

/**
 * slow-disconnect: QoS 1 load (loadgen qos1, 1 KB payloads), a QoS 1 subscriber to bench/# that
 * keeps up, and a paced QoS 1 probe. The probe's latencies in a quiet window; then the subscriber
 * stops reading, its queue grows to limits.maxQueuedBytesHard (16 MB) and it is disconnected: the
 * probe's latencies from the freeze until a second after the disconnect. (The quiet window has the
 * subscriber too, so both windows carry the same deliveries: what differs is the freeze.)
 */
async function runSlowDisconnect(ctx, broker, { batch }) {
  const quietMs = (ctx.quick ? 1 : ctx.duration) * 1000;
  const limitMs = ctx.quick ? 8000 : 30000;
  const load = runLoadgen(ctx, broker, 'qos1', ['-n', '4', '-W', '64', '-m', '1024'], { batch, warmup: 0, duration: (quietMs + limitMs) / 1000 + 3 });
  let probe = null;
  let subscriber = null;
  try {
    subscriber = await rawClient(broker.port, 'bench-slow', { filter: 'bench/#', qos: 1, ack: true });
    await sleep(1000); // the load is on
    probe = await pacedProbe(broker.port, 2);
    const quietFrom = performance.now();
    await sleep(quietMs);
    const quiet = probe.window(quietFrom, performance.now());
    const before = await slowConsumerDisconnects(broker);
    const frozenAt = performance.now();
    subscriber.pause(); // stops reading: the kernel buffers fill, then the broker's queue
    let cutAt = null;
    while (performance.now() - frozenAt < limitMs) {
      if ((await slowConsumerDisconnects(broker)) > before) { cutAt = performance.now(); break; }
      await sleep(50);
    }
    await sleep(1000);
    const during = probe.window(frozenAt, (cutAt ?? performance.now()) + 1000);
    const timeline = probe.timeline(frozenAt, (cutAt ?? performance.now()) + 1000, 100);
    probe.stop();
    const loaded = await load;
    const result = {
      ok: cutAt !== null && quiet.n > 0 && during.n > 0,
      quiet_p99_ms: quiet.p99, quiet_max_ms: quiet.max,
      disconnect_p99_ms: during.p99, disconnect_max_ms: during.max, disconnect_unacked: during.unacked,
      p99_pct_of_quiet: quiet.p99 > 0 && during.p99 !== null ? (100 * during.p99) / quiet.p99 : null,
      cut_after_ms: cutAt === null ? null : cutAt - frozenAt,
      probe: { quiet, during, timeline_100ms: timeline }, load: { ok: loaded.ok, acks_per_s: loaded.acks_per_s },
    };
    if (cutAt === null) result.error = `the frozen subscriber was not disconnected within ${limitMs / 1000} s`;
    return result;
  } catch (err) {
    return { ok: false, error: err.message };
  } finally {
    probe?.stop();
    subscriber?.destroy();
    await load;
  }
}

/**
 * burst-rss: broker RSS idle, then a QoS 0 subscriber to # stops reading and 4 publishers write
 * 200 MB of 1 KB QoS 0 messages as fast as the broker takes them; everyone leaves, and RSS is read
 * again 60 s later. Nothing is retained or stored, so live data is ~0: the goal is RSS within 20%
 * of idle.
 */
async function runBurstRss(ctx, broker) {
  const totalMb = ctx.quick ? 20 : 200;
  const afterMs = ctx.quick ? 12000 : 60000; // quick: still past edgebus' quiet collection (5 s quiet, checked every 5 s)
  const sockets = [];
  try {
    await sleep(1000);
    const idle = rssKb(broker.pid);
    sockets.push(await rawClient(broker.port, 'bench-stalled', { filter: '#', qos: 0 }));
    const pubs = await Promise.all([0, 1, 2, 3].map((i) => rawClient(broker.port, `bench-burst-${i}`)));
    sockets.push(...pubs);
    let peak = 0;
    const sampler = setInterval(() => { peak = Math.max(peak, rssKb(broker.pid) ?? 0); }, 100);
    const started = performance.now();
    await Promise.all(pubs.map(async (s, i) => {
      const one = packet(0x30, Buffer.concat([str(`bench/${i}`), Buffer.alloc(1024, 0x61)]));
      const chunk = Buffer.concat(Array.from({ length: 64 }, () => one));
      for (let sent = 0; sent < (totalMb / 4) * 1024 * 1024; sent += chunk.length) {
        if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
      }
    }));
    const burstMs = performance.now() - started;
    await sleep(200);
    clearInterval(sampler);
    peak = Math.max(peak, rssKb(broker.pid) ?? 0);
    for (const s of sockets.splice(0)) s.destroy();
    await sleep(afterMs);
    const after = rssKb(broker.pid);
    return {
      ok: idle !== null && after !== null,
      burst_mb: totalMb, burst_ms: burstMs, after_s: afterMs / 1000,
      rss_idle_mb: idle / 1024, rss_peak_mb: peak / 1024, rss_after_mb: after / 1024,
      rss_after_pct_of_idle: idle ? (100 * after) / idle : null,
    };
  } catch (err) {
    return { ok: false, error: err.message };
  } finally {
    for (const s of sockets) s.destroy();
  }
}

export const OVERLOAD_SCENARIOS = [
  {
    name: 'slow-disconnect',
    title: 'Slow consumer disconnect: QoS 1 load (4 publishers, 1 KB) to a QoS 1 subscriber on bench/#, a paced QoS 1 probe (one PUBLISH / 2 ms); ' +
      'the subscriber stops reading until its 16 MB bound disconnects it: the probe\'s PUBACK latency then vs before',
    brokers: ['edgebus'],
    batches: ['default'],
    brokerOptions: async (broker) => (broker === 'edgebus' ? { httpPort: await freePort() } : {}),
    run: runSlowDisconnect,
    extraSeconds: 12,
    metrics: [
      { id: 'quiet_p99', label: 'probe PUBACK p99, quiet', unit: 'ms', better: 'lower', value: (r) => num(r.quiet_p99_ms) },
      { id: 'disc_p99', label: 'probe PUBACK p99, slow consumer disconnect', unit: 'ms', better: 'lower', value: (r) => num(r.disconnect_p99_ms) },
      { id: 'disc_max', label: 'probe PUBACK max, slow consumer disconnect', unit: 'ms', better: 'lower', value: (r) => num(r.disconnect_max_ms) },
      { id: 'pct', label: 'probe PUBACK p99, disconnect as % of quiet (goal <= 200 %)', unit: '%', better: 'lower', value: (r) => num(r.p99_pct_of_quiet) },
    ],
    notes: () => ['latency of each probe message from when it was due (a stall counts for every message due during it); ' +
      'the disconnect window runs from the freeze until 1 s after /healthz counts the slow-consumer disconnect. ' +
      'mosquitto has no per-client byte bound that disconnects (it drops past max_queued_messages), so the row is edgebus only'],
  },
  {
    name: 'burst-rss',
    title: 'Memory after a burst: a QoS 0 subscriber to # stops reading, 4 publishers write 200 MB of 1 KB QoS 0 messages, everyone leaves; RSS 60 s later vs idle',
    brokers: ['edgebus', 'mosquitto'],
    batches: ['default'],
    run: runBurstRss,
    extraSeconds: 64,
    metrics: [
      { id: 'idle', label: 'RSS idle', unit: 'MB', better: 'lower', group: 'resources', value: (r) => num(r.rss_idle_mb) },
      { id: 'peak', label: 'RSS peak in a 200 MB burst', unit: 'MB', better: 'lower', group: 'resources', value: (r) => num(r.rss_peak_mb) },
      { id: 'after', label: 'RSS 60 s after a 200 MB burst', unit: 'MB', better: 'lower', group: 'resources', value: (r) => num(r.rss_after_mb) },
      { id: 'pct', label: 'RSS 60 s after a 200 MB burst, % of idle (goal <= 120 %)', unit: '%', better: 'lower', group: 'resources', value: (r) => num(r.rss_after_pct_of_idle) },
    ],
    notes: (ctx) => (ctx.quick ? ['burst-rss with --quick: a 20 MB burst and RSS 12 s after it, not 200 MB and 60 s'] : []),
  },
];
