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
//                (e.g. { config: '/tmp/x.json' } -> edgebus --config FILE; see brokers/index.mjs)
//   metrics      [{ id, label, unit, better: 'higher'|'lower', group?: 'resources',
//                   value: (result) => number|null }]
//   notes        optional (ctx, brokerNames) => [string]: caveats added to the table's notes
//                when the scenario ran (what each broker keeps, what its ack means)
//   extraSeconds optional: seconds per run on top of warmup + duration, for the time estimate
//   fill         optional (ctx) => { warmup, duration }: the load that fills a stream before a
//                replay is shorter than a measured run (replay-*)
//   reference    optional broker name the ratio column divides by instead of mosquitto (for rows
//                mosquitto cannot run, e.g. replay: nats-server)
//
// A run() result may carry notes: [string]; they are added to the table's notes, prefixed
// with the row, repetition and broker.
//
// Scenarios run in this order; new throughput scenarios go before 'conns'.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runLoadgen } from '../lib/loadgen.mjs';
import { createOfflineSession } from '../lib/mqtt-session.mjs';
import { createStream, streamInfo } from '../lib/nats-js.mjs';
import { freePort, pinnedCommand, rssKb, runCapture, sleep } from '../lib/proc.mjs';
import { OVERLOAD_SCENARIOS } from './overload.mjs';

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
  // (in memory, no journal) is the comparison the issue asks for; with --nats, nats-server gets a
  // JetStream file-store stream on bench.> (created over the NATS protocol before the load).
  ...['batch', 'always', 'none'].map((fsync) => ({
    name: `stream-${fsync}`,
    title: `Journaled QoS 1, fsync ${fsync}: 8 publishers, 64 in flight, a stream capturing bench/# ` +
      '(Mosquitto: plain QoS 1 in memory; nats: JetStream file-store stream on bench.>)',
    brokers: ['edgebus', 'mosquitto', 'nats'],
    loadgen: () => ['qos1', '-n', '8', '-W', '64'],
    brokerOptions: (broker) => (broker === 'edgebus' ? { config: streamConfig(fsync) } : {}),
    run: runStream,
    metrics: [{ id: 'rate', label: `journaled QoS 1 (${fsync})`, unit: 'PUBACKs/s', better: 'higher', value: (r) => num(r.acks_per_s) }],
    notes: natsStreamNotes,
  })),
  // Cost of persistence (issue 5): retained messages and offline session queues, edgebus with its
  // data dir (the default: kept in <dataDir>/mqtt) against Mosquitto with `persistence true`.
  {
    name: 'retained',
    title: 'Retained QoS 1: 8 publishers, 64 in flight, RETAIN set, each over 1,000 topics (bench/<p>/<n % 1000>): the retained store churns',
    // bare aedes (in memory) left out to keep --quick under 2 minutes; add it here to compare
    brokers: ['edgebus', 'mosquitto'],
    loadgen: () => ['qos1', '-n', '8', '-W', '64', '-R', '-T', '1000'],
    brokerOptions: (broker) => (broker === 'mosquitto' ? { persistence: true } : {}),
    metrics: [{ id: 'rate', label: 'retained QoS 1 (8,000 topics)', unit: 'PUBACKs/s', better: 'higher', value: (r) => num(r.acks_per_s) }],
    notes: (ctx, on) => [
      'each message replaces the retained message of its topic; 8,000 topics stay retained. ' + [
        on.includes('edgebus') && `edgebus: ${edgebusStoreNote(ctx, 'retained messages')}`,
        on.includes('mosquitto') && `mosquitto: persistence true, ${mosquittoPersistenceNote(ctx)}`,
      ].filter(Boolean).join('; '),
    ],
  },
  {
    name: 'offline-queue',
    title: 'QoS 1 queued for an offline session: a persistent session (clean session 0) subscribed to bench/# at QoS 1, ' +
      'disconnected before the load; 8 publishers, 64 in flight',
    brokers: ['edgebus', 'mosquitto'],
    loadgen: () => ['qos1', '-n', '8', '-W', '64'],
    brokerOptions: (broker) => {
      if (broker === 'edgebus') return { config: configFile('offline-queue.json', { sessions: { maxQueuedMessages: EDGEBUS_MAX_QUEUED } }) };
      if (broker === 'mosquitto') return { persistence: true, maxQueuedMessages: 0 };
      return {};
    },
    run: runOfflineQueue,
    extraSeconds: 0.5,
    metrics: [{ id: 'rate', label: 'QoS 1 queued for an offline session', unit: 'PUBACKs/s', better: 'higher', value: (r) => num(r.acks_per_s) }],
    notes: (ctx, on) => [
      'what each broker keeps for the offline session: ' + [
        on.includes('edgebus') && (edgebusPersistenceOverridden(ctx)
          ? `edgebus: ${edgebusStoreNote(ctx)}`
          : `edgebus: the newest ${EDGEBUS_MAX_QUEUED.toLocaleString('en-US')} messages ` +
            '(sessions.maxQueuedMessages, the largest value its config accepts), dropping the oldest: once the queue is full ' +
            `(about a second into the run at these rates) every publish is an enqueue plus a drop; ${edgebusStoreNote(ctx, 'the queue')}`),
        on.includes('mosquitto') && `mosquitto: every message (max_queued_messages 0), in memory; persistence true, ${mosquittoPersistenceNote(ctx)}`,
      ].filter(Boolean).join('; '),
    ],
  },
  // Replay (issue 4): fill a stream with the qos1 load (edgebus: fsync none; nats: the JetStream
  // stream of the stream-* rows), then time ONE reader over everything stored, in its own process
  // pinned like loadgen (bench/lib/replay-reader.mjs). The reader knows how many messages the
  // stream holds and fails the run unless exactly that many arrive. nats has no HTTP replay: its
  // comparison is a JetStream push consumer over the NATS protocol, in the replay-mqtt rows.
  {
    name: 'replay-http',
    title: 'Replay to one HTTP reader: a stream filled by the QoS 1 load (fsync none), read back as NDJSON from a warm journal ' +
      '(edgebus only: nats has no HTTP replay, its JetStream read is in the replay-mqtt rows)',
    brokers: ['edgebus'],
    loadgen: () => ['qos1', '-n', '8', '-W', '64'],
    brokerOptions: replayBrokerOptions,
    fill: replayFill,
    run: (ctx, broker, o) => runReplay(ctx, broker, o, { kind: 'http', url: `http://127.0.0.1:${broker.httpPort}/api/streams/bench/messages?limit=0` }),
    extraSeconds: 2,
    metrics: [
      { id: 'rate', label: 'replay over HTTP', unit: 'msg/s', better: 'higher', value: (r) => num(r.replay_msgs_per_s) },
      { id: 'mbps', label: 'replay over HTTP (NDJSON bytes)', unit: 'MB/s', better: 'higher', value: (r) => num(r.replay_mb_per_s) },
    ],
    notes: (ctx, on, runs) => [`one HTTP reader, GET /api/streams/bench/messages?limit=0; a message is one NDJSON line, MB/s counts the NDJSON body (JSON and base64 included). nats has no HTTP replay: compare with the nats-server cells of the replay-mqtt rows (its JetStream read)${countNote(runs)}`],
  },
  ...[
    { name: 'replay-mqtt', qos: 0, ack: 'none', what: 'QoS 0', nats: 'ack none' },
    { name: 'replay-mqtt-qos1', qos: 1, ack: 'explicit', what: 'QoS 1', nats: 'ack explicit, max_ack_pending 256' },
  ].map((v) => ({
    name: v.name,
    title: `Replay to one MQTT reader, ${v.what}: a stream filled by the QoS 1 load, read back through $replay/bench/all/# from a warm journal ` +
      `(nats: the JetStream stream of the stream-* rows read by a push consumer over the NATS protocol, ${v.nats})`,
    brokers: ['edgebus', 'nats'],
    reference: 'nats', // mosquitto cannot replay: the ratio column divides by nats-server
    loadgen: () => ['qos1', '-n', '8', '-W', '64'],
    brokerOptions: replayBrokerOptions,
    fill: replayFill,
    run: (ctx, broker, o) => runReplay(ctx, broker, o, broker.name === 'nats'
      ? { kind: 'nats', ack: v.ack, maxAckPending: 256 }
      : { kind: 'mqtt', port: broker.port, qos: v.qos, filter: '$replay/bench/all/#' }),
    extraSeconds: 2,
    metrics: [
      { id: 'rate', label: `replay over MQTT, ${v.what}`, unit: 'msg/s', better: 'higher', value: (r) => num(r.replay_msgs_per_s) },
      { id: 'mbps', label: `replay over MQTT, ${v.what} (payload bytes)`, unit: 'MB/s', better: 'higher', value: (r) => num(r.replay_mb_per_s) },
    ],
    notes: (ctx, on, runs) => [
      (v.qos === 0
        ? 'one raw MQTT 3.1.1 reader subscribed to $replay/bench/all/# at QoS 0 (no acks)'
        : 'one raw MQTT 3.1.1 reader subscribed to $replay/bench/all/# at QoS 1: every PUBLISH PUBACKed, the acks of each read in one write; edgebus keeps at most 256 unacked per subscription') +
      (on.includes('nats')
        ? `; nats-server: an ephemeral JetStream push consumer (deliver_policy all, replay_policy instant, ${v.nats}${v.ack === 'explicit' ? ', each message acked by an empty PUB to its reply subject, batched per read' : ''}) delivering to a subject the reader subscribed to on the same NATS connection`
        : '') +
      `. A message is one PUBLISH${on.includes('nats') ? ' (nats: MSG/HMSG)' : ''}; MB/s counts application payload only (` +
      (on.includes('nats') ? 'not topics, MQTT headers, nor the 25-byte NATS header `Nmqtt-Pub:1` nats stores with every message that came in over MQTT' : 'not topics nor MQTT headers') +
      `). Timed from the SUBSCRIBE${on.includes('nats') ? ' / consumer create request' : ''} to the last message${countNote(runs)}`,
    ],
  })),
  // Overload (issue 15): a slow consumer's disconnect, a burst's memory (bench/scenarios/overload.mjs)
  ...OVERLOAD_SCENARIOS,
  {
    name: 'suback',
    title: 'SUBSCRIBE to SUBACK (issue 16): a new connection\'s first SUBSCRIBE, one after the other; later SUBSCRIBEs of subscribed connections at 1,000/s, each to a new filter',
    run: runSuback,
    extraSeconds: 3,
    metrics: [
      { id: 'first_p50', label: 'first SUBSCRIBE to SUBACK p50', unit: 'µs', better: 'lower', value: (r) => num(r.first_us?.p50) },
      { id: 'first_p99', label: 'first SUBSCRIBE to SUBACK p99', unit: 'µs', better: 'lower', value: (r) => num(r.first_us?.p99) },
      { id: 'later_p50', label: 'SUBSCRIBE to SUBACK p50 (1,000/s)', unit: 'µs', better: 'lower', value: (r) => num(r.later_us?.p50) },
      { id: 'later_p99', label: 'SUBSCRIBE to SUBACK p99 (1,000/s)', unit: 'µs', better: 'lower', value: (r) => num(r.later_us?.p99) },
    ],
  },
  // NATS mode (issue 19): the same loads over the NATS client protocol, edgebus' NATS listener
  // against nats-server's own, driven by the reference generator's -P nats (mqttload.c).
  {
    name: 'nats-fanin',
    title: 'NATS fan-in: 8 publishers to bench.<i>, 1 subscriber on bench.* (NATS client protocol)',
    brokers: ['edgebus', 'nats'],
    reference: 'nats',
    run: (ctx, broker, o) => runNatsLoad(ctx, broker, ['fanin', '-n', '8', '-s', '1'], o),
    metrics: [
      { id: 'rate', label: 'NATS fan-in', unit: 'msg/s received', better: 'higher', value: (r) => num(r.recv_rate) },
      { id: 'cpu', label: 'NATS fan-in broker CPU', unit: 'CPU-s / M msgs', better: 'lower', group: 'resources', value: (r) => num(r.broker_cpu_s_per_M) },
    ],
  },
  {
    name: 'nats-fanout',
    title: 'NATS fan-out: 1 publisher, 16 subscribers on the same subject (NATS client protocol)',
    brokers: ['edgebus', 'nats'],
    reference: 'nats',
    run: (ctx, broker, o) => runNatsLoad(ctx, broker, ['fanout', '-s', '16'], o),
    metrics: [{ id: 'rate', label: 'NATS fan-out', unit: 'deliveries/s', better: 'higher', value: (r) => num(r.recv_rate) }],
  },
  {
    name: 'nats-latency',
    title: 'NATS latency: 1 publisher at a fixed rate (10,000 msg/s), 1 subscriber (NATS client protocol)',
    brokers: ['edgebus', 'nats'],
    reference: 'nats',
    run: (ctx, broker, o) => runNatsLoad(ctx, broker, ['latency', '-r', String(ctx.rate)], o),
    metrics: [
      { id: 'p50', label: 'NATS latency p50', unit: 'µs', better: 'lower', value: (r) => num(r.lat_us?.p50) },
      { id: 'p99', label: 'NATS latency p99', unit: 'µs', better: 'lower', value: (r) => num(r.lat_us?.p99) },
    ],
  },
  {
    name: 'nats-conns',
    title: 'NATS idle connections: INFO + CONNECT + PING/PONG, held; broker RSS before/after',
    brokers: ['edgebus', 'nats'],
    reference: 'nats',
    run: (ctx, broker, o) => runNatsLoad(ctx, broker, ['conns', '-c', String(ctx.conns)], { ...o, conns: true }),
    metrics: [{ id: 'rss_per_conn', label: 'NATS RSS per idle connection', unit: 'bytes', better: 'lower', group: 'resources', value: (r) => num(r.rss_per_conn_bytes) }],
  },
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

const SUBACK_TIMER = fileURLToPath(new URL('../lib/suback-latency.mjs', import.meta.url));

/** suback: bench/lib/suback-latency.mjs on the generator's CPU, against the broker. */
async function runSuback(ctx, broker) {
  const spec = { port: broker.port, rate: 1000, seconds: ctx.duration, firsts: ctx.quick ? 50 : 200 };
  const [cmd, cmdArgs] = pinnedCommand(ctx.loadgenCpu, process.execPath, [SUBACK_TIMER, JSON.stringify(spec)]);
  const res = await runCapture(cmd, cmdArgs, { timeoutMs: (ctx.duration + 60) * 1000 });
  let out = null;
  try { out = JSON.parse(res.stdout.trim().split('\n').filter(Boolean).pop() || 'null'); } catch { /* below */ }
  if (!out) return { ok: false, error: `suback timer ${res.timedOut ? 'timed out' : `exit ${res.code ?? res.signal}`}: ${res.stderr.trim().split('\n').slice(-3).join(' | ')}` };
  return out;
}

/** The largest sessions.maxQueuedMessages edgebus accepts (a config 'count': 1 .. 65535). */
const EDGEBUS_MAX_QUEUED = 65535;

let confDir = null;
/** Write an edgebus config file into one temp dir for this harness run (removed at exit). */
function configFile(name, config) {
  if (!confDir) {
    confDir = mkdtempSync(path.join(tmpdir(), 'edgebus-bench-conf-'));
    process.on('exit', () => { try { rmSync(confDir, { recursive: true, force: true }); } catch { /* best effort */ } });
  }
  const file = path.join(confDir, name);
  writeFileSync(file, JSON.stringify(config));
  return file;
}

/** An edgebus config file with one stream on bench/# (the data dir is the broker's temp dir). */
function streamConfig(fsync) {
  return configFile(`stream-${fsync}.json`, { streams: [{ name: 'bench', subjects: ['bench/#'], fsync }] });
}

const edgebusPersistenceOverridden = (ctx) => ctx.edgebusArgs.some((a) => /^--persistence-enabled/.test(a));

function edgebusStoreNote(ctx, what) {
  return edgebusPersistenceOverridden(ctx)
    ? `as set by --edgebus-args "${ctx.edgebusArgs.join(' ')}" (with persistence off: aedes' in-memory store, no queue bound)`
    : `${what} in <dataDir>/mqtt, every change written to the OS at the end of its event-loop turn, fdatasync within ~100 ms`;
}

function mosquittoPersistenceNote(ctx) {
  return ctx.mosquittoAutosave
    ? `which writes its whole in-memory store to mosquitto.db every ${ctx.mosquittoAutosave} s (--mosquitto-autosave) and at exit`
    : 'which writes its whole in-memory store to mosquitto.db only every autosave_interval (1800 s) and at exit: ' +
      'nothing during the measurement';
}

/** stream-*: nats needs its JetStream stream created first; everyone else runs the plain load. */
async function runStream(ctx, broker, { batch, scenario }, load = {}) {
  const [mode, ...args] = scenario.loadgen(ctx);
  if (broker.name !== 'nats') return runLoadgen(ctx, broker, mode, args, { batch, ...load });
  if (!broker.natsPort) return { ok: false, error: 'nats client port unknown' };
  const config = { name: 'bench', subjects: ['bench.>'], storage: 'file' };
  try {
    await createStream(broker.natsPort, config);
  } catch (err) {
    return { ok: false, error: `creating the JetStream stream: ${err.message}` };
  }
  const result = await runLoadgen(ctx, broker, mode, args, { batch, ...load });
  if (!result.ok) return result;
  try {
    const info = await streamInfo(broker.natsPort, config.name);
    result.stream_msgs = info.state?.messages ?? null;
    result.stream_bytes = info.state?.bytes ?? null;
  } catch (err) {
    result.notes = [`stream info failed: ${err.message}`];
  }
  return result;
}

/** The nats notes of the stream-* rows: what its PUBACK means (once), and whether the stream held every acknowledged message. */
let natsExplained = false;
function natsStreamNotes(ctx, on, runs) {
  if (!on.includes('nats')) return [];
  const mine = runs.filter((r) => r.broker === 'nats' && r.ok);
  const checked = mine.filter((r) => Number.isFinite(r.result.stream_msgs));
  const short = checked.filter((r) => r.result.stream_msgs !== r.result.total_acked);
  const out = [];
  if (!natsExplained) {
    natsExplained = true;
    out.push('nats: a JetStream stream "bench" (file storage, other settings default) captures bench.>, created over the NATS ' +
      'protocol before each run. nats-server 2.9 has no fsync policy (its file store fsyncs on a timer, 2 min by default; ' +
      'sync_interval came in 2.10), so the three stream-* rows are one and the same nats configuration. Its MQTT PUBACK does ' +
      'not report the stream write: against a stream that refuses messages (max_msgs 1000, discard new) it still acknowledged ' +
      'every QoS 1 PUBLISH (see bench/README.md). Its qos1 row is the same load without the stream');
  }
  if (checked.length) {
    out.push(short.length
      ? `nats: the stream held fewer messages than were acknowledged in ${short.length} of ${checked.length} runs (` +
        short.map((r) => `${r.result.stream_msgs} of ${r.result.total_acked}`).join(', ') + ')'
      : `nats: after every run (${checked.length}) the stream held exactly as many messages as were acknowledged ($JS.API.STREAM.INFO)`);
  }
  return out;
}

/** offline-queue: leave a persistent session subscribed to bench/# behind, then the plain QoS 1 load. */
async function runOfflineQueue(ctx, broker, { batch, scenario }) {
  let session;
  try {
    session = await createOfflineSession({ port: broker.port, clientId: 'bench-offline', filter: 'bench/#', qos: 1 });
  } catch (err) {
    return { ok: false, error: err.message };
  }
  const [mode, ...args] = scenario.loadgen(ctx);
  const result = await runLoadgen(ctx, broker, mode, args, { batch });
  return { ...result, offline_session: session };
}

/** replay-*: edgebus with a stream on bench/# (fsync none) and an HTTP port, to ask how many messages it holds. */
async function replayBrokerOptions(broker) {
  return broker === 'edgebus' ? { config: streamConfig('none'), httpPort: await freePort() } : {};
}

const READER = fileURLToPath(new URL('../lib/replay-reader.mjs', import.meta.url));

/** How many messages the edgebus stream holds (GET /api/streams/bench: state.messages). */
async function edgebusStored(broker) {
  const res = await fetch(`http://127.0.0.1:${broker.httpPort}/api/streams/bench`);
  if (!res.ok) throw new Error(`GET /api/streams/bench answered ${res.status}`);
  const n = (await res.json()).state?.messages;
  if (!Number.isSafeInteger(n)) throw new Error('GET /api/streams/bench: no state.messages');
  return n;
}

/**
 * replay-*: fill with the qos1 load (nats: runStream, which creates the JetStream stream first),
 * read how many messages the stream holds, then time one reader (bench/lib/replay-reader.mjs,
 * pinned to the generator's CPU) over all of them. The reader fails unless exactly that many
 * arrive (within a time bound). The result is the reader's (its CPU figures cover the read, for
 * the saturation check); the fill's loadgen output is kept under `fill`.
 */
async function runReplay(ctx, broker, { batch, scenario }, reader) {
  const [mode, ...args] = scenario.loadgen(ctx);
  const fill = broker.name === 'nats'
    ? await runStream(ctx, broker, { batch, scenario }, replayFill(ctx))
    : await runLoadgen(ctx, broker, mode, args, { batch, ...replayFill(ctx) });
  if (!fill.ok) return { ...fill, error: `fill: ${fill.error}` };
  let stored;
  try {
    stored = broker.name === 'nats' ? fill.stream_msgs : await edgebusStored(broker);
  } catch (err) {
    return { ok: false, error: err.message, fill };
  }
  if (!Number.isSafeInteger(stored) || stored <= 0) return { ok: false, error: `the stream holds ${stored} messages after the fill`, fill };
  const spec = { ...reader, port: reader.port ?? broker.natsPort, expect: stored, brokerPid: broker.pid, timeoutMs: 30000 + Math.ceil(stored / 20) };
  const [cmd, cmdArgs] = pinnedCommand(ctx.loadgenCpu, process.execPath, [READER, JSON.stringify(spec)]);
  const res = await runCapture(cmd, cmdArgs, { timeoutMs: spec.timeoutMs + 15000 });
  let read = null;
  try { read = JSON.parse(res.stdout.trim().split('\n').filter(Boolean).pop() || 'null'); } catch { /* below */ }
  if (!read) return { ok: false, error: `replay reader ${res.timedOut ? 'timed out' : `exit ${res.code ?? res.signal}`}: ${res.stderr.trim().split('\n').slice(-3).join(' | ')}`, fill };
  const notes = [...(fill.notes || [])];
  if (Number.isFinite(fill.total_acked) && stored < fill.total_acked) notes.push(`the stream holds ${stored} messages but ${fill.total_acked} were acknowledged`);
  return { ...read, ok: !!read.ok && read.received === stored, stored, fill, ...(notes.length ? { notes } : {}) };
}

/** How long the replay rows fill their stream: enough messages to time a read, not a measured run. */
function replayFill(ctx) {
  return { warmup: 0, duration: ctx.quick ? 1 : 2.5 };
}

/** For a replay row's note: every run read exactly what its stream held (a run that did not failed). */
function countNote(runs) {
  const ok = runs.filter((r) => r.ok);
  if (!ok.length) return '';
  const per = [...new Set(ok.map((r) => r.broker))].map((b) => `${b} ${ok.filter((r) => r.broker === b).map((r) => r.result.stored.toLocaleString('en-US')).join(', ')}`);
  return `; each successful run read exactly the number of messages its stream held (${per.join('; ')})`;
}

/** The reference generator with its NATS mode; EDGEBUS_MQTTLOAD_SRC overrides where its source is. */
const MQTTLOAD_SRC = process.env.EDGEBUS_MQTTLOAD_SRC || '/work/shared/bench/mqttload.c';
let mqttloadBin = null;

/** nats-*: mqttload -P nats against the broker's NATS client port; its JSON line is the result. */
async function runNatsLoad(ctx, broker, [mode, ...args], { batch, conns = false } = {}) {
  if (!broker.natsPort) return { ok: false, error: `${broker.name}: NATS client port unknown` };
  if (mqttloadBin === null) {
    if (!existsSync(MQTTLOAD_SRC)) return { ok: false, error: `the reference generator ${MQTTLOAD_SRC} is not there (set EDGEBUS_MQTTLOAD_SRC)` };
    const out = path.join(ctx.benchDir, 'bin', 'mqttload');
    execFileSync('gcc', ['-O2', '-o', out, MQTTLOAD_SRC], { stdio: ['ignore', 'inherit', 'inherit'] });
    mqttloadBin = out;
  }
  const argv = [mode, '-P', 'nats', '-h', '127.0.0.1', '-p', String(broker.natsPort), '-m', String(ctx.payload), '-b', String(broker.pid), ...args];
  if (conns) argv.push('-w', ctx.quick ? '1' : '2');
  else argv.push('-d', String(ctx.duration), '-w', String(ctx.warmup));
  if (batch) argv.push('-B', String(batch));
  const [cmd, cmdArgs] = pinnedCommand(ctx.loadgenCpu, mqttloadBin, argv);
  const res = await runCapture(cmd, cmdArgs, { timeoutMs: (ctx.warmup + ctx.duration + 60) * 1000 + (ctx.conns / 200) * 1000 });
  let parsed = null;
  try { parsed = JSON.parse(res.stdout.trim().split('\n').filter(Boolean).pop() || 'null'); } catch { /* below */ }
  if (!parsed || res.code !== 0) return { ...(parsed || {}), ok: false, error: `mqttload ${mode} -P nats exit ${res.code ?? res.signal}: ${res.stderr.trim().split('\n').slice(-3).join(' | ')}`, argv };
  // the harness's cross-checks read loadgen.c's names
  return { ...parsed, ok: true, total_received: parsed.total_recv, argv };
}
