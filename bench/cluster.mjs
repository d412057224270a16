// Cluster rows (issue 17): three nats-server (routes, JetStream) and three edgebus nodes on this
// machine, against one edgebus without a cluster, with MQTT.js clients in this process.
//
//   npm run bench -- --cluster [--messages 200000] [--publishers 4] [--subscribers 4] [--window 64]
//
// Rows: QoS 0 fan-in (publishers on node a, one subscriber on node b), QoS 0 fan-out (one
// publisher on a, subscribers on b and c), QoS 1 against one node (publisher and subscriber on a:
// the cost of the cluster capture). Each row: msg/s, edgebus CPU-seconds per million messages
// (all nodes summed; nats-server's shown apart) and p99 latency publisher -> subscriber.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { cpuSeconds, freePort, sleep, spawnTracked, stopChild } from './lib/proc.mjs';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

function parse(argv) {
  const o = { messages: 200_000, publishers: 4, subscribers: 4, window: 64 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]?.replace(/^--/, '');
    if (!(k in o)) throw new Error(`bench --cluster: unknown option --${k} (--messages, --publishers, --subscribers, --window)`);
    o[k] = Number(argv[i + 1]);
  }
  return o;
}

function waitLine(child, text, ms = 20_000) {
  return new Promise((resolve, reject) => {
    let out = '';
    let found = false;
    const t = setTimeout(() => reject(new Error(`no "${text}" in ${ms} ms:\n${out}`)), ms);
    // the listener stays, reading (and dropping) the output so the child never blocks on a full pipe
    const on = (d) => {
      if (found) return;
      out += d;
      const i = out.indexOf(text);
      if (i >= 0) { found = true; clearTimeout(t); resolve(out.slice(out.lastIndexOf('\n', i) + 1, out.indexOf('\n', i) + 1 || undefined)); }
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
  });
}

async function natsCluster(dir) {
  const ports = await Promise.all([0, 1, 2].map(freePort));
  const routes = await Promise.all([0, 1, 2].map(freePort));
  const procs = ports.map((p, i) => spawnTracked('nats-server', ['-a', '127.0.0.1', '-p', String(p), '-n', `b${i}`, '-js', '-sd', path.join(dir, `n${i}`),
    '--cluster', `nats://127.0.0.1:${routes[i]}`, '--routes', routes.map((r) => `nats://127.0.0.1:${r}`).join(','), '--cluster_name', 'bench']));
  await Promise.all(procs.map((p) => waitLine(p, 'Server is ready')));
  return { procs, urls: ports.map((p) => `nats://127.0.0.1:${p}`) };
}

async function edgebus(dir, config) {
  writeFileSync(path.join(dir, 'edgebus.json'), JSON.stringify({ sys: { interval: 0 }, persistence: { enabled: false }, ...config }));
  const child = spawnTracked(process.execPath, [path.join(root, 'dist/edgebus.mjs'), 'serve', '--host', '127.0.0.1', '--mqtt-port', '0', '--http-port', '0', '--nats-port', '0'], { cwd: dir });
  const line = await waitLine(child, '"edgebus ready"');
  return { child, port: JSON.parse(line).mqttPort };
}

const connect = (port, opts = {}) => new Promise((resolve, reject) => {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, ...opts });
  c.once('connect', () => resolve(c));
  c.once('error', reject);
});

/** Publishes `total` messages spread over `pubs`, QoS `qos` (QoS 1: `window` in flight each); resolves when `expected` arrived. */
async function run({ pubs, subs, topic, qos, total, window, expected, cpuPids }) {
  const lat = [];
  let got = 0;
  let resolveDone;
  const done = new Promise((r) => { resolveDone = r; });
  for (const s of subs) {
    s.on('message', (_t, payload) => {
      got++;
      if (got % 16 === 0) lat.push(Number(process.hrtime.bigint() - payload.readBigUInt64BE(0)) / 1e6);
      if (got >= expected) resolveDone();
    });
  }
  const cpu0 = cpuPids.map(cpuSeconds);
  const t0 = process.hrtime.bigint();
  const each = Math.floor(total / pubs.length);
  await Promise.all(pubs.map(async (p) => {
    const buf = () => { const b = Buffer.alloc(64); b.writeBigUInt64BE(process.hrtime.bigint(), 0); return b; };
    if (qos === 0) {
      for (let i = 0; i < each; i++) {
        p.publish(topic, buf(), { qos: 0 });
        if (i % 256 === 0) await new Promise((r) => setImmediate(r)); // let the socket drain
      }
    } else {
      let inflight = 0;
      let sent = 0;
      await new Promise((resolve) => {
        const pump = () => {
          while (inflight < window && sent < each) {
            inflight++; sent++;
            p.publish(topic, buf(), { qos: 1 }, () => { inflight--; if (sent >= each && inflight === 0) resolve(); else pump(); });
          }
        };
        pump();
      });
    }
  }));
  await Promise.race([done, sleep(60_000)]);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = cpuPids.map((pid, i) => (cpuSeconds(pid) ?? 0) - (cpu0[i] ?? 0));
  lat.sort((a, b) => a - b);
  return { delivered: got, msgsPerSec: Math.round(got / secs), cpuPerMillion: cpu.map((c) => +(c / (Math.max(got, 1) / 1e6)).toFixed(2)), p99ms: +(lat[Math.floor(lat.length * 0.99)] ?? NaN).toFixed(2) };
}

export async function main(argv) {
  const o = parse(argv);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'edgebus-bench-cluster-'));
  const children = [];
  const clients = [];
  const rows = [];
  try {
    const solo = await edgebus(mkdtempSync(path.join(dir, 'solo-')), {});
    children.push(solo.child);
    const nats = await natsCluster(dir);
    children.push(...nats.procs);
    const nodes = [];
    for (const id of ['a', 'b', 'c']) {
      const n = await edgebus(mkdtempSync(path.join(dir, `${id}-`)), { cluster: { urls: nats.urls.join(','), name: 'bench', nodeId: id, replicas: 1 } });
      nodes.push(n);
      children.push(n.child);
    }
    const ebPids = nodes.map((n) => n.child.pid);
    const natsPids = nats.procs.map((p) => p.pid);
    const plan = [
      ['fan-in QoS 0', 'off', { pub: [solo.port], sub: [solo.port], subs: 1, pubs: o.publishers, qos: 0 }, [solo.child.pid]],
      ['fan-in QoS 0', 'on (a -> b)', { pub: [nodes[0].port], sub: [nodes[1].port], subs: 1, pubs: o.publishers, qos: 0 }, ebPids],
      ['fan-out QoS 0', 'off', { pub: [solo.port], sub: [solo.port], subs: o.subscribers, pubs: 1, qos: 0 }, [solo.child.pid]],
      ['fan-out QoS 0', 'on (a -> b, c)', { pub: [nodes[0].port], sub: [nodes[1].port, nodes[2].port], subs: o.subscribers, pubs: 1, qos: 0 }, ebPids],
      ['QoS 1, one node', 'off', { pub: [solo.port], sub: [solo.port], subs: 1, pubs: 1, qos: 1 }, [solo.child.pid]],
      ['QoS 1, one node', 'on (a -> a)', { pub: [nodes[0].port], sub: [nodes[0].port], subs: 1, pubs: 1, qos: 1 }, ebPids],
    ];
    let k = 0;
    for (const [name, cluster, s, pids] of plan) {
      const topic = `bench/${k++}`;
      const subs = [];
      for (let i = 0; i < s.subs; i++) {
        const c = await connect(s.sub[i % s.sub.length]);
        clients.push(c);
        await c.subscribeAsync(topic, { qos: s.qos });
        subs.push(c);
      }
      const pubs = [];
      for (let i = 0; i < s.pubs; i++) { const c = await connect(s.pub[i % s.pub.length]); clients.push(c); pubs.push(c); }
      // interest spreads over the NATS routes after the SUBACK: wait until a probe arrives
      for (let tries = 0; tries < 100; tries++) {
        const got = new Promise((r) => { subs[0].once('message', () => r(true)); setTimeout(() => r(false), 50); });
        const b = Buffer.alloc(64); b.writeBigUInt64BE(process.hrtime.bigint(), 0);
        pubs[0].publish(topic, b);
        if (await got) break;
      }
      await sleep(200);
      const total = s.qos === 1 ? Math.max(1, Math.floor(o.messages / 4)) : o.messages;
      const r = await run({ pubs, subs, topic, qos: s.qos, total, window: o.window, expected: Math.floor(total / s.pubs) * s.pubs * s.subs, cpuPids: [...pids, ...(cluster === 'off' ? [] : natsPids)] });
      const ebCpu = r.cpuPerMillion.slice(0, pids.length).reduce((a, b) => a + b, 0);
      const natsCpu = r.cpuPerMillion.slice(pids.length).reduce((a, b) => a + b, 0);
      rows.push({ scenario: name, cluster, delivered: r.delivered, msgsPerSec: r.msgsPerSec, edgebusCpuSecPerMillion: +ebCpu.toFixed(2), natsCpuSecPerMillion: +natsCpu.toFixed(2), p99ms: r.p99ms });
      for (const c of [...subs, ...pubs]) await c.endAsync(true);
    }
  } finally {
    for (const c of clients) c.end(true);
    await Promise.all(children.map((c) => stopChild(c)));
    rmSync(dir, { recursive: true, force: true });
  }
  console.log('| scenario | cluster | delivered | msg/s | edgebus CPU-s / M msg | nats-server CPU-s / M msg | p99 ms |');
  console.log('|---|---|---:|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.scenario} | ${r.cluster} | ${r.delivered} | ${r.msgsPerSec} | ${r.edgebusCpuSecPerMillion} | ${r.natsCpuSecPerMillion} | ${r.p99ms} |`);
  console.log(JSON.stringify({ cluster: rows }));
}
