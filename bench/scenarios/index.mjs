// Scenario registry for `npm run bench`.
//
// A scenario is a plain object:
//   name         id used by --only
//   title        one line for the README/table
//   batches      optional list of loadgen -B values; each becomes its own set of rows
//                (default: [ctx.batch]); 1 = one MQTT packet per write(), like a device
//   brokers      optional list of broker names the scenario applies to (default: all)
//   loadgen      (ctx) => [mode, ...flags]   flags for bench/bin/loadgen
//   run          optional async (ctx, broker, { batch, scenario }) => result   replaces the default
//                "start loadgen, parse its JSON line" runner (see conns below)
//   brokerOptions optional (brokerName, ctx) => options passed to the broker's prepare()
//                (e.g. { config: '/tmp/x.json' } -> edgebus --config FILE)
//   metrics      [{ id, label, unit, better: 'higher'|'lower', group?: 'resources',
//                   value: (result) => number|null }]
//
// Later scenarios (journaled QoS 1 per fsync policy, replay, ...) are added by
// appending to SCENARIOS.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runLoadgen } from '../lib/loadgen.mjs';
import { rssKb, sleep } from '../lib/proc.mjs';

const num = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);

export const SCENARIOS = [
  {
    name: 'fanin',
    title: 'QoS 0 fan-in: 8 publishers to bench/<i>, 1 subscriber on bench/+',
    batches: ['default', 1],
    loadgen: () => ['fanin', '-n', '8', '-s', '1'],
    metrics: [
      { id: 'rate', label: 'fan-in', unit: 'msg/s received', better: 'higher', value: (r) => num(r.recv_per_s) },
      { id: 'cpu', label: 'fan-in broker CPU', unit: 'CPU-s / M msgs', better: 'lower', group: 'resources', value: (r) => num(r.broker_cpu_s_per_M) },
    ],
  },
  {
    name: 'fanout',
    title: 'QoS 0 fan-out: 1 publisher, 16 subscribers on the same topic',
    batches: ['default', 1],
    loadgen: () => ['fanout', '-s', '16'],
    metrics: [{ id: 'rate', label: 'fan-out', unit: 'deliveries/s', better: 'higher', value: (r) => num(r.recv_per_s) }],
  },
  {
    name: 'qos1',
    title: 'QoS 1 publish: 8 publishers, 64 in flight each, no subscribers',
    batches: ['default', 1],
    loadgen: () => ['qos1', '-n', '8', '-W', '64'],
    metrics: [{ id: 'rate', label: 'QoS 1', unit: 'PUBACKs/s', better: 'higher', value: (r) => num(r.acks_per_s) }],
  },
  {
    name: 'latency',
    title: 'Latency: 1 publisher at a fixed rate (10,000 msg/s), 1 subscriber, timestamp in the payload',
    // at 10k msg/s the pacing tick is 100 us: one packet per write already
    loadgen: (ctx) => ['latency', '-r', String(ctx.rate)],
    metrics: [
      { id: 'p50', label: 'latency p50', unit: 'µs', better: 'lower', value: (r) => num(r.lat_us?.p50) },
      { id: 'p99', label: 'latency p99', unit: 'µs', better: 'lower', value: (r) => num(r.lat_us?.p99) },
      { id: 'p999', label: 'latency p99.9', unit: 'µs', better: 'lower', value: (r) => num(r.lat_us?.p999) },
    ],
  },
  // Journaled QoS 1 (issue 3): the same load as 'qos1', with a stream capturing bench/# under each
  // fsync policy; edgebus acknowledges only once the journal holds the message. Mosquitto's QoS 1
  // (in memory, no journal) is the comparison the issue asks for.
  ...['batch', 'always', 'none'].map((fsync) => ({
    name: `stream-${fsync}`,
    title: `Journaled QoS 1, fsync ${fsync}: 8 publishers, 64 in flight, a stream capturing bench/# (Mosquitto: plain QoS 1 in memory)`,
    brokers: ['edgebus', 'mosquitto'],
    loadgen: () => ['qos1', '-n', '8', '-W', '64'],
    brokerOptions: (broker) => (broker === 'edgebus' ? { config: streamConfig(fsync) } : {}),
    metrics: [{ id: 'rate', label: `journaled QoS 1 (${fsync})`, unit: 'PUBACKs/s', better: 'higher', value: (r) => num(r.acks_per_s) }],
  })),
  {
    name: 'conns',
    title: 'Idle connections: CONNECT (keepalive 0) + CONNACK, held; broker RSS before/after',
    loadgen: (ctx) => ['conns', '-c', String(ctx.conns), '-k', '0'],
    run: runConns,
    metrics: [
      { id: 'rss_per_conn', label: 'RSS per idle connection', unit: 'bytes', better: 'lower', group: 'resources', value: (r) => num(r.rss_per_conn_bytes) },
      { id: 'rss_total', label: 'RSS with idle connections held', unit: 'MB', better: 'lower', group: 'resources', value: (r) => (num(r.rss_after_kb) === null ? null : r.rss_after_kb / 1024) },
      { id: 'conn_rate', label: 'connection setup', unit: 'conns/s', better: 'higher', group: 'resources', value: (r) => num(r.conns_per_s) },
    ],
  },
];

/**
 * conns: open ctx.conns idle connections; when loadgen reports "ready" on stderr
 * let the broker settle, then read its VmRSS. RSS per connection =
 * (RSS held - RSS before) / connections that got a CONNACK.
 */
async function runConns(ctx, broker, { batch, scenario }) {
  const settleMs = ctx.quick ? 700 : 1500;
  const hold = settleMs / 1000 + 1.5;
  await sleep(200);
  const before = rssKb(broker.pid);
  let sampled = null;
  let readyAt = 0;
  const result = await runLoadgen(ctx, broker, 'conns', scenario.loadgen(ctx).slice(1), {
    batch,
    duration: hold,
    warmup: 0,
    onStderrLine: (line) => {
      if (!line.startsWith('loadgen: ready')) return;
      readyAt = Date.now();
      sampled = sleep(settleMs).then(() => rssKb(broker.pid));
    },
  });
  const after = sampled ? await sampled : null;
  if (!result.ok) return result;
  const connected = result.connected || 0;
  return {
    ...result,
    rss_before_kb: before,
    rss_after_kb: after,
    settle_ms: settleMs,
    rss_per_conn_bytes: connected && before !== null && after !== null ? ((after - before) * 1024) / connected : null,
    ok: connected > 0 && after !== null,
    ...(connected < ctx.conns ? {
      warning: `only ${connected} of ${ctx.conns} connections accepted` +
        (broker.nofile && broker.nofile < ctx.conns + 64 ? ` (broker's open-file limit is ${broker.nofile})` : ''),
    } : {}),
    ...(readyAt ? {} : { error: 'loadgen never reported ready' }),
  };
}

/** An edgebus config file with one stream on bench/# (the data dir is the broker's temp dir). */
function streamConfig(fsync) {
  const dir = mkdtempSync(path.join(tmpdir(), 'edgebus-bench-stream-'));
  const file = path.join(dir, `stream-${fsync}.json`);
  writeFileSync(file, JSON.stringify({ streams: [{ name: 'bench', subjects: ['bench/#'], fsync }] }));
  return file;
}
