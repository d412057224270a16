#!/usr/bin/env node
// The reader of the replay rows (issue 4), run by the harness as its own process so that it can
// be pinned to the generator's CPU (`taskset -c 1`) like loadgen, away from the broker's:
//
//   node bench/lib/replay-reader.mjs '{"kind":"mqtt","port":1883,"qos":0,"expect":250000,"brokerPid":123}'
//
// kind mqtt  edgebus' $replay/<stream>/all/# over MQTT 3.1.1 (mqtt-replay-reader.mjs), qos 0 or 1
//      nats  a JetStream push consumer over the NATS protocol (nats-js.mjs readStreamPush),
//            ack "none" or "explicit"
//      http  GET <url> (NDJSON), counting lines and bytes
//
// Prints one JSON line: the reader's counts plus replay_msgs_per_s, replay_mb_per_s (bytes as
// counted: MQTT and NATS application payload, HTTP the NDJSON body), and CPU over the timed read
// as loadgen reports it (broker_cpu_pct, gen_cpu_pct = this reader, other_cpu_pct), so the
// harness' saturation check covers the read, not the fill.
import http from 'node:http';
import { readMqttReplay } from './mqtt-replay-reader.mjs';
import { readStreamPush } from './nats-js.mjs';
import { cpuSeconds, machineBusySeconds } from './proc.mjs';

/** GET an NDJSON replay; one message per line. The clock starts with the request (TCP connect included). */
function readHttpReplay({ url, expect, timeoutMs = 60000, onStart }) {
  return new Promise((resolve) => {
    let lines = 0;
    let bytes = 0;
    let t0 = 0n;
    let tFirst = 0n;
    let done = false;
    const finish = (error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const seconds = t0 ? Number(process.hrtime.bigint() - t0) / 1e9 : 0;
      req.destroy();
      if (!error && lines !== expect) error = `${lines} lines for ${expect} stored messages`;
      resolve({
        ok: !error, ...(error ? { error } : {}), transport: 'http', expected: expect, received: lines, ndjson_bytes: bytes,
        seconds, first_msg_ms: tFirst ? Number(tFirst - t0) / 1e6 : null,
      });
    };
    const timer = setTimeout(() => finish(`${lines} of ${expect} lines within ${timeoutMs} ms`), timeoutMs);
    t0 = process.hrtime.bigint();
    onStart?.();
    const req = http.get(url, (res) => {
      if (res.statusCode !== 200) { finish(`replay answered ${res.statusCode}`); return; }
      res.on('data', (chunk) => {
        if (!bytes) tFirst = process.hrtime.bigint();
        bytes += chunk.length;
        for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++; // native scan, not a JS byte loop
      });
      res.on('end', () => finish(null));
      res.on('error', (err) => finish(`replay response: ${err.message}`));
    });
    req.on('error', (err) => finish(`GET ${url}: ${err.message}`));
  });
}

async function main() {
  const spec = JSON.parse(process.argv[2] || '{}');
  let before = null;
  const onStart = () => {
    before = { self: process.cpuUsage(), broker: spec.brokerPid ? cpuSeconds(spec.brokerPid) : null, machine: machineBusySeconds() };
  };
  const timeoutMs = spec.timeoutMs || 60000;
  let r;
  if (spec.kind === 'mqtt') {
    r = await readMqttReplay({ port: spec.port, filter: spec.filter || `$replay/${spec.stream || 'bench'}/all/#`, qos: spec.qos || 0, expect: spec.expect, timeoutMs, onStart });
  } else if (spec.kind === 'nats') {
    r = await readStreamPush(spec.port, { stream: spec.stream || 'bench', ack: spec.ack || 'none', maxAckPending: spec.maxAckPending || 256, expect: spec.expect, timeoutMs, onStart });
  } else if (spec.kind === 'http') {
    r = await readHttpReplay({ url: spec.url, expect: spec.expect, timeoutMs, onStart });
  } else {
    r = { ok: false, error: `unknown reader kind ${spec.kind}` };
  }
  const self = process.cpuUsage(before?.self);
  const broker = spec.brokerPid ? cpuSeconds(spec.brokerPid) : null;
  const machine = machineBusySeconds();
  const out = { tool: 'edgebus-replay-reader', ...r };
  if (r.seconds > 0) {
    const bytes = r.transport === 'http' ? r.ndjson_bytes : r.payload_bytes;
    out.replay_msgs_per_s = r.received / r.seconds;
    out.replay_mb_per_s = bytes / r.seconds / 1e6;
    out.replay_bytes_counted = r.transport === 'http' ? 'ndjson' : 'payload';
    if (before) {
      const gen = (self.user + self.system) / 1e6;
      out.gen_cpu_pct = (gen / r.seconds) * 100;
      if (broker !== null && before.broker !== null) out.broker_cpu_pct = ((broker - before.broker) / r.seconds) * 100;
      if (machine !== null && before.machine !== null && out.broker_cpu_pct !== undefined) {
        // /proc counters tick at 10 ms: on a short read this is coarse
        out.other_cpu_pct = Math.max(0, ((machine - before.machine) - gen - (broker - before.broker)) / r.seconds * 100);
      }
    }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ tool: 'edgebus-replay-reader', ok: false, error: err.message })}\n`);
  process.exit(1);
});
