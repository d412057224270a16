#!/usr/bin/env node
// Bridge benchmark (issue 14): how fast a backlog drains to a remote, beside what the remote itself
// ingests from one client with the same window, and beside Mosquitto's own bridge; and what a
// forwarded message costs edgebus in CPU.
//
//   node bench/bridge.mjs [--count 1000000] [--payload 64] [--window 1000] [--out DIR]
//   node bench/bridge.mjs --count 2000          # smoke run
//   node bench/bridge.mjs --count 50000 --only ingest-mosquitto,drain-mosquitto   # a probe of some rows
//
// Every process is started here on free loopback ports and ended by its PID. Rows:
//   ingest-mosquitto   1 MQTT.js client, QoS 1, `window` in flight, straight to Mosquitto
//   ingest-mosquitto-5 the same with MQTT 5 and a `msg-id` user property per message: the packets the bridge sends
//   drain-mosquitto    edgebus' bridge draining `count` messages (64 B) queued while Mosquitto was down
//   mosquitto-bridge   Mosquitto's own bridge (edge Mosquitto to the same remote) draining the same backlog
//   ingest-jetstream   1 nats.js client, asynchronous JetStream publishes with `window` acks pending (as the bridge sends), straight to nats-server
//   drain-jetstream    edgebus' bridge draining the same backlog to JetStream
//   cpu-off / cpu-on   edgebus CPU-seconds per million QoS 1 messages into a stream, without and with a
//                      connected bridge forwarding them (Mosquitto remote)
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { connect as natsConnect, createInbox, headers as natsHeaders } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { cpuSeconds, freePort, installCleanup, sleep, spawnTracked, stopChild, waitForPort } from './lib/proc.mjs';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(benchDir);

function parse(argv) {
  const o = { count: 1_000_000, payload: 64, window: 1000, publishers: 4, only: '', out: path.join(benchDir, 'results') };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in o)) throw new Error(`unknown option --${k} (known: ${Object.keys(o).join(', ')})`);
    o[k] = k === 'out' ? path.resolve(argv[i + 1]) : k === 'only' ? argv[i + 1] : Number(argv[i + 1]);
  }
  return o;
}

const log = (m) => process.stderr.write(`bench bridge: ${m}\n`);

/** A process of ours on a port: start() and stop() again on the same files. */
function service(cmd, args, port, dir) {
  let child = null;
  return {
    port,
    dir,
    get pid() { return child?.pid ?? null; },
    async start() {
      child = spawnTracked(cmd, args);
      let err = '';
      child.stderr.on('data', (d) => { err += d; });
      child.stdout.on('data', () => {});
      await waitForPort('127.0.0.1', port, child).catch((e) => { throw new Error(`${cmd}: ${e.message}: ${err}`); });
    },
    async stop() { await stopChild(child); child = null; },
  };
}

async function mosquitto(extra = []) {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-mosq-'));
  const port = await freePort();
  const conf = ['user root', 'persistence false', 'max_queued_messages 0', 'max_inflight_messages 0', 'log_dest none', `listener ${port} 127.0.0.1`, 'allow_anonymous true', ...extra];
  writeFileSync(path.join(dir, 'm.conf'), conf.join('\n') + '\n');
  const s = service('mosquitto', ['-c', path.join(dir, 'm.conf')], port, dir);
  await s.start();
  return s;
}

async function natsServer() {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-nats-'));
  const port = await freePort();
  const s = service('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], port, dir);
  await s.start();
  return s;
}

async function edgebus(config) {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-edgebus-'));
  const mqttPort = await freePort();
  const httpPort = await freePort();
  writeFileSync(path.join(dir, 'edgebus.json'), JSON.stringify({ ...config, dataDir: path.join(dir, 'data') }));
  const s = service(process.execPath, [path.join(root, 'dist', 'edgebus.mjs'), 'serve', '--config', path.join(dir, 'edgebus.json'), '--host', '127.0.0.1', '--mqtt-port', String(mqttPort), '--http-port', String(httpPort), '--log-level', 'warn', '--nats-port', '0'], mqttPort, dir);
  await s.start();
  await waitForPort('127.0.0.1', httpPort, null);
  return Object.assign(s, {
    url: `mqtt://127.0.0.1:${mqttPort}`,
    async bridge(name) { return (await (await fetch(`http://127.0.0.1:${httpPort}/api/bridges/${name}`)).json()).bridge; },
  });
}

/**
 * `n` QoS 1 messages of `payload` bytes from `clients` MQTT.js clients with `window` in flight each; resolves with the seconds taken.
 * `msgIds`: MQTT 5 with a `msg-id` user property on every message, the packets the bridge sends.
 */
async function publish(url, n, { payload, window, clients = 1, topic = (c) => `dev/p${c}`, msgIds = false }) {
  const body = Buffer.alloc(payload, 0x61);
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    const share = Math.floor(n / clients) + (c < n % clients ? 1 : 0);
    const client = mqtt.connect(url, { protocolVersion: msgIds ? 5 : 4, reconnectPeriod: 0, clean: true });
    await new Promise((resolve, reject) => { client.once('connect', resolve); client.once('error', reject); });
    await new Promise((resolve, reject) => {
      let sent = 0;
      let acked = 0;
      const t = topic(c);
      const pump = () => {
        while (sent < share && sent - acked < window) {
          sent++;
          client.publish(t, body, msgIds ? { qos: 1, properties: { userProperties: { 'msg-id': `bench:${sent}` } } } : { qos: 1 }, (err) => {
            if (err) return reject(err);
            if (++acked === share) resolve();
            else pump();
          });
        }
      };
      if (share === 0) resolve();
      pump();
    });
    await client.endAsync(true);
  }));
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Counts what arrives on `filter` at an MQTT broker; `until(n)` resolves with the time the n-th arrived. */
async function counter(url, filter) {
  const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 100, clean: false, clientId: `bench-count-${process.pid}` });
  let got = 0;
  let waiter = null;
  client.on('message', () => { got++; if (waiter && got >= waiter.n) { waiter.resolve(process.hrtime.bigint()); waiter = null; } });
  await new Promise((resolve, reject) => { client.once('connect', resolve); client.once('error', reject); });
  await client.subscribeAsync(filter, { qos: 1 });
  return {
    get got() { return got; },
    until(n, timeoutMs) {
      return new Promise((resolve, reject) => {
        if (got >= n) return resolve(process.hrtime.bigint());
        const t = setTimeout(() => reject(new Error(`received ${got} of ${n} in ${timeoutMs} ms`)), timeoutMs);
        waiter = { n, resolve: (at) => { clearTimeout(t); resolve(at); } };
      });
    },
    end: () => client.endAsync(true),
  };
}

async function until(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`${what}: not reached in ${timeoutMs} ms`);
}

const rate = (n, s) => Math.round(n / s);

async function ingestMosquitto(o, msgIds = false) {
  const remote = await mosquitto();
  const url = `mqtt://127.0.0.1:${remote.port}`;
  // the same subscriber counts as in the drain rows (Mosquitto delivers every message to it there too)
  const count = await counter(url, 'bench/#');
  try {
    const t0 = process.hrtime.bigint();
    await publish(url, o.count, { ...o, topic: () => 'bench/p0', msgIds });
    const t1 = await count.until(o.count, 600_000);
    return { rate: rate(o.count, Number(t1 - t0) / 1e9) };
  } finally { await count.end(); await remote.stop(); }
}

/** Fills edgebus' outbox while `remote` is stopped, starts it, times the drain until the remote has every message. */
async function drainEdgebus(o, remote, url, arrived) {
  const eb = await edgebus({ bridges: [{ name: 'b', urls: [url], out: [{ from: 'dev/#', to: url.startsWith('nats') ? 'bench.{#}' : 'bench/{#}' }], window: o.window, backoff: { min: '50ms', max: '100ms' } }] });
  try {
    await until(async () => (await eb.bridge('b')).state === 'connected', 15_000, 'bridge connected');
    await remote.stop();
    await until(async () => (await eb.bridge('b')).state !== 'connected', 15_000, 'bridge down');
    const fill = await publish(eb.url, o.count, { ...o, clients: o.publishers });
    log(`outbox filled with ${o.count} in ${fill.toFixed(1)} s`);
    const cpu0 = cpuSeconds(eb.pid);
    const t0 = process.hrtime.bigint();
    await remote.start();
    const t1 = await arrived(o.count);
    const s = Number(t1 - t0) / 1e9;
    const cpu = cpuSeconds(eb.pid) - cpu0;
    const info = await eb.bridge('b');
    return { rate: rate(o.count, s), seconds: s, cpuPerM: (cpu / o.count) * 1e6, resent: info.sent - o.count };
  } finally { await eb.stop(); rmSync(eb.dir, { recursive: true, force: true }); }
}

async function drainMosquittoByEdgebus(o) {
  const remote = await mosquitto();
  const url = `mqtt://127.0.0.1:${remote.port}`;
  let count = null;
  try {
    count = await counter(url, 'bench/#');
    const c = count;
    return await drainEdgebus(o, remote, url, (n) => c.until(n, 600_000));
  } finally { await count?.end(); await remote.stop(); }
}

async function drainMosquittoByMosquitto(o) {
  const remote = await mosquitto();
  const url = `mqtt://127.0.0.1:${remote.port}`;
  const edge = await mosquitto([
    'connection bench', `address 127.0.0.1:${remote.port}`, 'topic dev/# out 1 "" bench/', 'cleansession false', 'local_clientid bench-edge', 'remote_clientid bench-edge', 'restart_timeout 1',
    'bridge_protocol_version mqttv311', 'try_private true',
  ]);
  let count = null;
  try {
    count = await counter(url, 'bench/#');
    // the bridge connects, then the remote goes away: the backlog is queued on the edge while it is down
    await sleep(1500);
    await remote.stop();
    await sleep(500);
    await publish(`mqtt://127.0.0.1:${edge.port}`, o.count, { ...o, clients: o.publishers });
    const before = count.got;
    const cpu0 = cpuSeconds(edge.pid);
    const t0 = process.hrtime.bigint();
    await remote.start();
    let t1;
    try {
      t1 = await count.until(before + o.count, Math.max(60_000, o.count / 10));
    } catch (err) {
      return { rate: null, note: `Mosquitto's bridge: ${err.message} (its queue is in memory and bounded; see mosquitto#3394, #2256)` };
    }
    const s = Number(t1 - t0) / 1e9;
    return { rate: rate(o.count, s), seconds: s, cpuPerM: ((cpuSeconds(edge.pid) - cpu0) / o.count) * 1e6 };
  } finally { await count?.end(); await edge.stop(); await remote.stop(); }
}

async function natsWithStream() {
  const remote = await natsServer();
  const nc = await natsConnect({ servers: `127.0.0.1:${remote.port}` });
  await (await jetstreamManager(nc)).streams.add({ name: 'BENCH', subjects: ['bench.>'], duplicate_window: 120_000_000_000 });
  await nc.close();
  return remote;
}

async function ingestJetStream(o) {
  const remote = await natsWithStream();
  const nc = await natsConnect({ servers: `127.0.0.1:${remote.port}` });
  try {
    // asynchronous JetStream publishes, acks on one reply inbox, `window` pending: as the bridge sends
    const body = Buffer.alloc(o.payload, 0x61);
    const inbox = `${createInbox()}.`;
    const t0 = process.hrtime.bigint();
    await new Promise((resolve, reject) => {
      let sent = 0;
      let acked = 0;
      const pump = () => {
        while (sent < o.count && sent - acked < o.window) {
          const h = natsHeaders();
          h.set('Nats-Msg-Id', `m${sent}`);
          nc.publish('bench.p0', body, { reply: inbox + (sent++).toString(36), headers: h });
        }
      };
      nc.subscribe(`${inbox}*`, {
        callback: (err, m) => {
          if (err || m.headers?.code === 503 || m.string().includes('"error"')) return reject(err ?? new Error(m.string() || 'no stream'));
          if (++acked === o.count) resolve();
          else pump();
        },
      });
      pump();
    });
    return { rate: rate(o.count, Number(process.hrtime.bigint() - t0) / 1e9) };
  } finally { await nc.close(); await remote.stop(); rmSync(remote.dir, { recursive: true, force: true }); }
}

async function drainJetStream(o) {
  const remote = await natsWithStream();
  const url = `nats://127.0.0.1:${remote.port}`;
  try {
    return await drainEdgebus(o, remote, url, async (n) => {
      const nc = await natsConnect({ servers: `127.0.0.1:${remote.port}` });
      const jsm = await jetstreamManager(nc);
      try {
        for (;;) {
          if ((await jsm.streams.info('BENCH')).state.messages >= n) return process.hrtime.bigint();
          await sleep(20);
        }
      } finally { await nc.close(); }
    });
  } finally { await remote.stop(); rmSync(remote.dir, { recursive: true, force: true }); }
}

/** edgebus CPU per million QoS 1 messages published into a stream, with the bridge off (no bridge) or on (forwarding live). */
async function cpuPerMillion(o, on) {
  const remote = await mosquitto();
  const url = `mqtt://127.0.0.1:${remote.port}`;
  const config = on
    ? { bridges: [{ name: 'b', urls: [url], out: [{ from: 'dev/#', to: 'bench/{#}' }], window: o.window }] }
    : { streams: [{ name: 'bridge-b', subjects: ['dev/#'] }] };
  const eb = await edgebus(config);
  try {
    if (on) await until(async () => (await eb.bridge('b')).state === 'connected', 15_000, 'bridge connected');
    const cpu0 = cpuSeconds(eb.pid);
    await publish(eb.url, o.count, { ...o, clients: o.publishers });
    if (on) await until(async () => (await eb.bridge('b')).backlog.messages === 0, 600_000, 'bridge drained');
    return { cpuPerM: ((cpuSeconds(eb.pid) - cpu0) / o.count) * 1e6 };
  } finally { await eb.stop(); await remote.stop(); rmSync(eb.dir, { recursive: true, force: true }); }
}

export async function runBridgeBench(o) {
  const rows = [];
  const notes = [];
  const only = o.only ? new Set(o.only.split(',')) : null;
  const step = async (id, label, fn) => {
    if (only !== null && !only.has(id)) return;
    log(`${id}: ${label}`);
    try {
      const r = await fn();
      rows.push({ id, label, ...r });
      if (r.note) notes.push(r.note);
    } catch (err) {
      rows.push({ id, label, error: err.message });
      notes.push(`${id} failed: ${err.message}`);
    }
  };
  await step('ingest-mosquitto', 'Mosquitto ingest, 1 client (MQTT.js QoS 1)', () => ingestMosquitto(o));
  await step('ingest-mosquitto-5', 'Mosquitto ingest, 1 client (MQTT.js QoS 1, MQTT 5 with a msg-id user property: the packets the bridge sends)', () => ingestMosquitto(o, true));
  await step('drain-mosquitto', 'edgebus bridge drain to Mosquitto', () => drainMosquittoByEdgebus(o));
  await step('mosquitto-bridge', "Mosquitto's own bridge drain to Mosquitto", () => drainMosquittoByMosquitto(o));
  await step('ingest-jetstream', 'JetStream ingest, 1 client (nats.js, async publish acks)', () => ingestJetStream(o));
  await step('drain-jetstream', 'edgebus bridge drain to JetStream', () => drainJetStream(o));
  await step('cpu-off', 'edgebus CPU, QoS 1 into a stream, no bridge', () => cpuPerMillion(o, false));
  await step('cpu-on', 'edgebus CPU, QoS 1 into the outbox, bridge forwarding to Mosquitto', () => cpuPerMillion(o, true));
  const by = Object.fromEntries(rows.map((r) => [r.id, r]));
  const ratio = (a, b) => (by[a]?.rate && by[b]?.rate ? `${(by[a].rate / by[b].rate).toFixed(2)}×` : '—');
  const n = (v, d = 0) => (typeof v === 'number' && Number.isFinite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: d }) : '—');
  const md = [
    `### Bridges: drain of a ${o.count.toLocaleString('en-US')}-message backlog (${o.payload} B, window ${o.window})`,
    '',
    '| row | msg/s | vs the remote\'s own ingest | CPU-s per M msgs | |',
    '|---|---|---|---|---|',
    `| ${by['ingest-mosquitto']?.label} | ${n(by['ingest-mosquitto']?.rate)} | 1.00× | | |`,
    `| ${by['ingest-mosquitto-5']?.label} | ${n(by['ingest-mosquitto-5']?.rate)} | ${ratio('ingest-mosquitto-5', 'ingest-mosquitto')} | | |`,
    `| ${by['drain-mosquitto']?.label} | ${n(by['drain-mosquitto']?.rate)} | ${ratio('drain-mosquitto', 'ingest-mosquitto')} (${ratio('drain-mosquitto', 'ingest-mosquitto-5')} of MQTT 5 with msg-id) | ${n(by['drain-mosquitto']?.cpuPerM, 2)} | resent ${n(by['drain-mosquitto']?.resent)} |`,
    `| ${by['mosquitto-bridge']?.label} | ${n(by['mosquitto-bridge']?.rate)} | ${ratio('mosquitto-bridge', 'ingest-mosquitto')} | ${n(by['mosquitto-bridge']?.cpuPerM, 2)} | edge Mosquitto's CPU |`,
    `| ${by['ingest-jetstream']?.label} | ${n(by['ingest-jetstream']?.rate)} | 1.00× | | |`,
    `| ${by['drain-jetstream']?.label} | ${n(by['drain-jetstream']?.rate)} | ${ratio('drain-jetstream', 'ingest-jetstream')} | ${n(by['drain-jetstream']?.cpuPerM, 2)} | resent ${n(by['drain-jetstream']?.resent)} |`,
    `| ${by['cpu-off']?.label} | | | ${n(by['cpu-off']?.cpuPerM, 2)} | |`,
    `| ${by['cpu-on']?.label} | | | ${n(by['cpu-on']?.cpuPerM, 2)} | |`,
    '',
    'Drains are timed from the remote\'s start until it holds every message (Mosquitto: a subscriber on the remote counted them;',
    'JetStream: the stream\'s message count); ingest rows are one client with the same window, no edgebus in between.',
    'Processes are not pinned; the remote, edgebus and the clients share the machine.',
    ...notes.map((x) => `- ${x}`),
  ].join('\n');
  return { rows, notes, markdown: md };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  installCleanup();
  let o;
  try { o = parse(process.argv.slice(2)); } catch (err) { console.error(`bench bridge: ${err.message}`); process.exit(1); }
  const r = await runBridgeBench(o);
  mkdirSync(o.out, { recursive: true });
  writeFileSync(path.join(o.out, 'bridge.md'), r.markdown + '\n');
  writeFileSync(path.join(o.out, 'bridge.json'), JSON.stringify({ options: o, rows: r.rows }, null, 2) + '\n');
  process.stdout.write(r.markdown + '\n');
  process.exit(r.rows.some((x) => x.error) ? 1 : 0);
}
