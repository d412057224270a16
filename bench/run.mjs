#!/usr/bin/env node
// edgebus benchmark harness (issue 9). See bench/README.md.
//
//   node bench/run.mjs [--quick] [--only fanin,qos1] [--brokers edgebus,mosquitto] [--nats] [--payload 64] ...
//
// Builds bench/loadgen.c, then for every scenario runs the brokers alternately
// (A, B, C, A, B, C, ...), each freshly started on a free loopback port, pinned to
// one CPU with the generator on the other; writes bench/results/latest.{md,json}.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BROKERS, brokerByName } from './brokers/index.mjs';
import { buildLoadgen, runLoadgen } from './lib/loadgen.mjs';
import {
  cpuSeconds, freePort, installCleanup, isAlive, nofileLimit, pinnedCommand, procComm, rssKb, sleep, spawnTracked, stopChild, waitForPort,
} from './lib/proc.mjs';
import { markdown, median, fmt } from './lib/report.mjs';
import { SCENARIOS } from './scenarios/index.mjs';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(benchDir);

// ---------- options ----------
const HELP = `usage: node bench/run.mjs [options]       (npm run bench -- [options])
  --quick              1 repetition, short runs, ${'2,000'} idle connections (< 2 min)
  --reps N             repetitions per scenario and broker (default 3)
  --only a,b           scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}
  --brokers a,b        brokers: ${BROKERS.map((b) => b.name).join(', ')} (default: all but nats)
  --nats               also run nats-server's MQTT listener
  --payload BYTES      payload size (default 64, min 20)
  --duration S         measured seconds per run (default 5, quick 1.5)
  --warmup S           warmup seconds per run (default 1, quick 0.5)
  --conns N            idle connections for 'conns' (default 10000, quick 2000)
  --rate N             latency scenario publish rate, msg/s (default 10000)
  --batch N            packets per write for the batched rows (default 256)
  --no-b1              skip the one-packet-per-write (-B 1) rows (always with --quick)
  --broker-cpu N       CPU for the broker (default 0)
  --loadgen-cpu N      CPU for the generator (default 1)
  --edgebus-args "..." extra arguments for 'edgebus serve'
  --mosquitto-autosave S  autosave_interval for the persistent Mosquitto of 'retained' and
                       'offline-queue' (default: Mosquitto's own, 1800 s)
  --max-minutes M      stop starting new runs after M minutes (default 15, quick 2;
                       a plan estimated longer than that: its estimate + 20 %)
  --out DIR            results directory (default bench/results)
  --bridge-count N     backlog of the bridge rows (default 1,000,000, quick 20,000); --only bridge runs only them
  --dry-run            print the plan and the time estimate, run nothing
  --cluster            the cluster rows instead (bench/cluster.mjs: --messages N, --publishers N, --subscribers N)`;

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    a = a.slice(2);
    let v;
    const eq = a.indexOf('=');
    if (eq >= 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
    const flag = ['quick', 'nats', 'no-b1', 'dry-run', 'help'].includes(a);
    if (!flag && v === undefined) {
      v = argv[++i];
      if (v === undefined) throw new Error(`--${a} needs a value`);
    }
    o[a] = flag ? true : v;
  }
  return o;
}

// issue 17: the cluster rows have their own harness (three nats-server and three edgebus nodes)
if (process.argv.includes('--cluster')) {
  await (await import('./cluster.mjs')).main(process.argv.slice(2).filter((a) => a !== '--cluster'));
  process.exit(0);
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  console.error(`bench: ${err.message}\n${HELP}`);
  process.exit(1);
}
if (opts.help) { console.log(HELP); process.exit(0); }
const known = new Set(['quick', 'reps', 'only', 'brokers', 'nats', 'payload', 'duration', 'warmup', 'conns', 'rate', 'batch', 'no-b1', 'dry-run',
  'broker-cpu', 'loadgen-cpu', 'edgebus-args', 'mosquitto-autosave', 'max-minutes', 'out', 'help', 'bridge-count']);
for (const k of Object.keys(opts)) if (!known.has(k)) { console.error(`bench: unknown option --${k}\n${HELP}`); process.exit(1); }

const quick = !!opts.quick;
const numOpt = (k, d) => {
  if (opts[k] === undefined) return d;
  const n = Number(opts[k]);
  if (!Number.isFinite(n) || n < 0) { console.error(`bench: --${k} wants a number`); process.exit(1); }
  return n;
};
const ncpu = os.cpus().length;
const ctx = {
  root,
  benchDir,
  quick,
  reps: Math.max(1, Math.round(numOpt('reps', quick ? 1 : 3))),
  payload: Math.round(numOpt('payload', 64)),
  duration: numOpt('duration', quick ? 1.5 : 5),
  warmup: numOpt('warmup', quick ? 0.5 : 1),
  conns: Math.round(numOpt('conns', quick ? 2000 : 10000)),
  rate: numOpt('rate', 10000),
  batch: Math.max(1, Math.round(numOpt('batch', 256))),
  brokerCpu: ncpu >= 2 ? numOpt('broker-cpu', 0) : null,
  loadgenCpu: ncpu >= 2 ? numOpt('loadgen-cpu', 1) : null,
  edgebusArgs: opts['edgebus-args'] ? String(opts['edgebus-args']).split(/\s+/).filter(Boolean) : [],
  mosquittoAutosave: opts['mosquitto-autosave'] === undefined ? null : Math.max(1, Math.round(numOpt('mosquitto-autosave', 0))),
  maxMinutes: numOpt('max-minutes', quick ? 2 : 15),
  outDir: opts.out ? path.resolve(opts.out) : path.join(benchDir, 'results'),
};
if (ctx.payload < 20) { console.error('bench: --payload must be at least 20 bytes (sequence number + timestamp)'); process.exit(1); }

const log = (msg) => process.stderr.write(`${msg}\n`);
const notes = [];
if (ncpu < 2) notes.push(`only ${ncpu} CPU: broker and generator are not pinned apart, numbers are indicative only`);

// ---------- selection ----------
let scenarios = SCENARIOS;
// issue 14: the bridge rows (bench/bridge.mjs) have their own shape (remotes, not broker columns):
// they run after the table, in a full run or with --only bridge
let wantBridge = !opts.only;
if (opts.only) {
  const want = String(opts.only).split(',').map((s) => s.trim()).filter((s) => s !== '' && !(s === 'bridge' && (wantBridge = true)));
  if (want.length === 0) {
    const { runBridgeBench } = await import('./bridge.mjs');
    installCleanup();
    const r = await runBridgeBench({ count: Math.round(numOpt('bridge-count', quick ? 20_000 : 1_000_000)), payload: ctx.payload, window: 1000, publishers: 4 });
    mkdirSync(ctx.outDir, { recursive: true });
    writeFileSync(path.join(ctx.outDir, 'bridge.md'), r.markdown + '\n');
    process.stdout.write(`${r.markdown}\n`);
    process.exit(r.rows.some((x) => x.error) ? 1 : 0);
  }
  for (const w of want) if (!SCENARIOS.some((s) => s.name === w)) { console.error(`bench: unknown scenario ${w}`); process.exit(1); }
  scenarios = SCENARIOS.filter((s) => want.includes(s.name));
}
let brokerNames = opts.brokers
  ? String(opts.brokers).split(',').map((s) => s.trim()).filter(Boolean)
  : BROKERS.filter((b) => !b.optIn).map((b) => b.name);
if (opts.nats && !brokerNames.includes('nats')) brokerNames.push('nats');
for (const n of brokerNames) if (!brokerByName(n)) { console.error(`bench: unknown broker ${n}`); process.exit(1); }
brokerNames = BROKERS.map((b) => b.name).filter((n) => brokerNames.includes(n)); // registry order
const brokerInfo = {};
const brokers = [];
for (const name of brokerNames) {
  const def = brokerByName(name);
  const why = def.available(ctx);
  brokerInfo[name] = { label: def.label, version: why ? null : def.version(ctx) };
  if (why) {
    brokerInfo[name].skipped = why;
    notes.push(`${def.label}: skipped, ${why}`);
    log(`bench: skipping ${name}: ${why}`);
  } else brokers.push(def);
}
if (!brokers.length) { console.error('bench: no broker available'); process.exit(1); }

// ---------- machine ----------
function sh(cmd, args) {
  try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], cwd: root }).trim(); } catch { return null; }
}
const gitCommit = sh('git', ['rev-parse', '--short', 'HEAD']) || 'no commit yet';
const gitDirty = (sh('git', ['status', '--porcelain']) || '').length > 0;
const machine = {
  date: new Date().toISOString(),
  cores: ncpu,
  cpu_model: os.cpus()[0]?.model?.trim() || 'unknown',
  kernel: `${os.type()} ${os.release()}`,
  mem_gb: +(os.totalmem() / 2 ** 30).toFixed(1),
  loadavg_at_start: os.loadavg().map((x) => +x.toFixed(2)),
  node: process.version,
  git_commit: gitCommit,
  git_dirty: gitDirty,
  versions: Object.fromEntries(Object.entries(brokerInfo).map(([k, v]) => [k, v.version || v.skipped])),
  gcc: sh('gcc', ['-dumpfullversion']),
};

// ---------- plan ----------
const variants = [];
for (const sc of scenarios) {
  let batches = (sc.batches || ['default']).map((b) => (b === 'default' ? ctx.batch : b));
  if (opts['no-b1'] || quick) batches = batches.filter((b) => b !== 1 || batches.length === 1);
  batches = [...new Set(batches)];
  for (const batch of batches) {
    variants.push({ scenario: sc, batch, key: `${sc.name}${(sc.batches || []).length > 1 ? ` B=${batch}` : ''}` });
  }
}
const applicable = (sc) => brokers.filter((b) => !sc.brokers || sc.brokers.includes(b.name));
const totalRuns = variants.reduce((n, v) => n + applicable(v.scenario).length * ctx.reps, 0);
// rough: ~1 s per run for start, drain and stop; Node brokers accept ~1k connections/s here
const estimate = variants.reduce((s, v) => s + applicable(v.scenario).reduce((t, b) => {
  if (v.scenario.name !== 'conns') return t + (v.scenario.fill ? v.scenario.fill(ctx).warmup + v.scenario.fill(ctx).duration : ctx.warmup + ctx.duration) + 1 + (v.scenario.extraSeconds || 0);
  const rate = ['mosquitto', 'nats'].includes(b.name) ? 5000 : 1000;
  return t + 4 + ctx.conns / rate + (quick ? 2.2 : 3);
}, 0) * ctx.reps, 0);
// --max-minutes is a safety net for the default plan (estimated 15 min); a bigger plan (--nats,
// more --reps, longer --duration) gets 20 % over its estimate unless --max-minutes is given
if (opts['max-minutes'] === undefined && estimate / 60 > ctx.maxMinutes) {
  ctx.maxMinutes = Math.ceil((estimate / 60) * 1.2);
  log(`bench: the plan is longer than the default --max-minutes; stopping new runs after ${ctx.maxMinutes} min instead`);
}
log(`bench: ${variants.length} scenario rows x ${brokers.map((b) => b.name).join(', ')} x ${ctx.reps} rep(s) = ${totalRuns} runs, about ${Math.ceil(estimate / 60)} min`);
if (opts['dry-run']) {
  for (const v of variants) log(`  ${v.key}: ${v.scenario.loadgen ? `loadgen ${v.scenario.loadgen(ctx).join(' ')} -B ${v.batch}` : 'its own client'} on ${applicable(v.scenario).map((b) => b.name).join(', ')}`);
  process.exit(0);
}

// ---------- brokers ----------
installCleanup();
const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'edgebus-bench-'));
process.on('exit', () => { try { rmSync(tmpRoot, { recursive: true, force: true }); } catch { /* best effort */ } });

async function startBroker(def, options) {
  const port = await freePort();
  const tmpDir = mkdtempSync(path.join(tmpRoot, `${def.name}-`));
  const prep = await def.prepare(ctx, { port, tmpDir, options: options || {} });
  const [cmd, args] = pinnedCommand(ctx.brokerCpu, prep.cmd, prep.args, { raiseNofile: true });
  const child = spawnTracked(cmd, args, { cwd: prep.cwd || root, env: { ...process.env, ...(prep.env || {}) } });
  const tail = [];
  const keep = (d) => {
    for (const l of String(d).split('\n')) if (l.trim()) tail.push(l.slice(0, 300));
    if (tail.length > 30) tail.splice(0, tail.length - 30);
  };
  child.stdout.on('data', keep); // always drained: a full pipe would stall the broker
  child.stderr.on('data', keep);
  const handle = { name: def.name, pid: child.pid, port: prep.mqttPort, natsPort: prep.natsPort, httpPort: prep.httpPort, child, tmpDir, tail };
  try {
    await waitForPort('127.0.0.1', prep.mqttPort, child, 20000);
  } catch (err) {
    await stopBroker(handle);
    throw new Error(`${def.name} did not start: ${err.message}${tail.length ? ` — ${tail.slice(-3).join(' | ')}` : ''}`);
  }
  await sleep(300);
  handle.comm = procComm(child.pid);
  handle.nofile = nofileLimit(child.pid);
  handle.idleRssKb = rssKb(child.pid);
  return handle;
}

async function stopBroker(h) {
  await stopChild(h.child, 3000);
  try { rmSync(h.tmpDir, { recursive: true, force: true }); } catch { /* best effort */ }
}

// ---------- run ----------
const started = Date.now();
const deadline = started + ctx.maxMinutes * 60000;
const runs = [];
let runNo = 0;
let outOfTime = false;

function summary(sc, r) {
  if (!r.ok) return `FAILED: ${r.error || 'unknown error'}`;
  const parts = sc.metrics.map((m) => `${m.label} ${fmt(m.value(r), m.unit)} ${m.unit}`);
  if (r.gen_cpu_pct !== undefined) parts.push(`broker ${fmt(r.broker_cpu_pct, '%')}% / loadgen ${fmt(r.gen_cpu_pct, '%')}% CPU`);
  return parts.join(', ');
}

log(`bench: building ${path.relative(root, path.join(benchDir, 'loadgen.c'))} (gcc -O2)`);
ctx.loadgen = buildLoadgen(benchDir);

for (const v of variants) {
  const sc = v.scenario;
  for (let rep = 1; rep <= ctx.reps; rep++) {
    for (const def of applicable(sc)) {
      runNo++;
      if (Date.now() > deadline) {
        if (!outOfTime) notes.push(`stopped starting runs after --max-minutes ${ctx.maxMinutes}; later rows are incomplete`);
        outOfTime = true;
        continue;
      }
      const rec = { scenario: sc.name, row: v.key, batch: v.batch, rep, broker: def.name, at: new Date().toISOString() };
      let h = null;
      try {
        h = await startBroker(def, sc.brokerOptions ? await sc.brokerOptions(def.name, ctx) : {});
        rec.broker_pid = h.pid;
        rec.broker_comm = h.comm;
        rec.broker_nofile = h.nofile === Infinity ? 'unlimited' : h.nofile;
        rec.idle_rss_kb = h.idleRssKb;
        const cpuBefore = cpuSeconds(h.pid);
        const result = sc.run
          ? await sc.run(ctx, h, { batch: v.batch, scenario: sc })
          : await runLoadgen(ctx, h, sc.loadgen(ctx)[0], sc.loadgen(ctx).slice(1), { batch: v.batch });
        // cross-check of loadgen's in-window figure: broker CPU over the whole loadgen run
        // (setup, warmup, drain included) per million messages it received in total
        const cpuAfter = cpuSeconds(h.pid);
        if (cpuBefore !== null && cpuAfter !== null) {
          rec.broker_cpu_s_whole_run = +(cpuAfter - cpuBefore).toFixed(2);
          const work = result.qos === 1 ? result.total_sent : result.total_received; // QoS 1 rows count PUBACKs
          if (work) rec.broker_cpu_s_per_M_whole_run = +((cpuAfter - cpuBefore) / (work / 1e6)).toFixed(3);
        }
        if (!isAlive(h.child)) {
          result.ok = false;
          result.error = `${def.name} exited during the run (${h.child.exitCode ?? h.child.signalCode})${h.tail.length ? `: ${h.tail.slice(-3).join(' | ')}` : ''}`;
        }
        rec.result = result;
        rec.ok = !!result.ok;
        if (result.error) rec.error = result.error;
      } catch (err) {
        rec.ok = false;
        rec.error = err.message;
      } finally {
        if (h) await stopBroker(h);
      }
      runs.push(rec);
      log(`[${runNo}/${totalRuns}] ${v.key} rep ${rep} ${def.name}: ${rec.result ? summary(sc, rec.result) : `FAILED: ${rec.error}`}`);
    }
  }
}

// ---------- aggregate ----------
const ran = brokers.map((b) => b.name).filter((n) => runs.some((r) => r.broker === n)); // columns: brokers that ran
const rows = [];
const saturation = [];
const cellStats = (vals, errors) => ({
  median: vals.length ? median(vals) : null,
  min: vals.length ? Math.min(...vals) : null,
  max: vals.length ? Math.max(...vals) : null,
  n: vals.length,
  values: vals,
  errors,
});
for (const v of variants) {
  const sc = v.scenario;
  const suffix = (sc.batches || []).length > 1 ? `, B=${v.batch}` : '';
  for (const m of sc.metrics) {
    const label = sc.name === 'conns' ? `${m.label} (${ctx.conns.toLocaleString('en-US')} conns)` : `${m.label}${suffix}`;
    const row = { scenario: sc.name, row: v.key, metric: m.id, label, unit: m.unit, better: m.better, group: m.group, ref: sc.reference, cells: {} };
    for (const b of applicable(sc)) {
      const mine = runs.filter((r) => r.row === v.key && r.broker === b.name);
      const vals = mine.filter((r) => r.ok).map((r) => m.value(r.result)).filter((x) => x !== null);
      row.cells[b.name] = cellStats(vals, mine.filter((r) => !r.ok).length);
    }
    rows.push(row);
  }
  if (sc.name !== 'conns') {
    const s = { label: v.key, cells: {} };
    for (const b of applicable(sc)) {
      const ok = runs.filter((r) => r.row === v.key && r.broker === b.name && r.ok);
      const bc = ok.map((r) => r.result.broker_cpu_pct).filter(Number.isFinite);
      const gc = ok.map((r) => r.result.gen_cpu_pct).filter(Number.isFinite);
      const oc = ok.map((r) => r.result.other_cpu_pct).filter(Number.isFinite);
      if (ok.length) s.cells[b.name] = `${fmt(median(bc), '%')} / ${fmt(median(gc), '%')} / ${fmt(median(oc), '%')}`;
      if (oc.length && Math.max(...oc) >= 20) {
        notes.push(`${v.key} on ${b.name}: other processes used up to ${fmt(Math.max(...oc), '%')}% CPU during the measurement (shared machine): treat as noise`);
      }
      if (gc.length && median(gc) >= 80) {
        notes.push(median(bc) >= 90
          ? `${v.key} on ${b.name}: broker saturated (${fmt(median(bc), '%')}%) but loadgen busy too (${fmt(median(gc), '%')}%)`
          : `${v.key} on ${b.name}: loadgen at ${fmt(median(gc), '%')}% CPU with the broker at ${fmt(median(bc), '%')}%: the generator may be the limit`);
      }
    }
    saturation.push(s);
  }
}
// idle RSS, from every broker start
{
  const row = { scenario: 'startup', row: 'startup', metric: 'idle_rss', label: 'idle RSS after start', unit: 'MB', better: 'lower', group: 'resources', cells: {} };
  for (const b of ran) {
    const vals = runs.filter((r) => r.broker === b && r.idle_rss_kb).map((r) => r.idle_rss_kb / 1024);
    row.cells[b] = cellStats(vals, 0);
  }
  rows.push(row);
}
for (const r of runs) {
  if (!r.ok) notes.push(`${r.row} rep ${r.rep} on ${r.broker} failed: ${r.error}`);
  else if (r.result?.warning) notes.push(`${r.row} rep ${r.rep} on ${r.broker}: ${r.result.warning}`);
  else if (r.result?.missing > 0 && r.result.qos !== 1) {
    const lost = r.result.gaps || 0;
    notes.push(`${r.row} rep ${r.rep} on ${r.broker}: ${r.result.missing} QoS 0 deliveries not received when the run ended` +
      (lost ? ` (${lost} skipped in sequence, i.e. dropped by the broker)` : ' (no sequence gaps: still in flight after the drain, not dropped)'));
  }
}

// what a run found out besides its numbers (e.g. how many messages nats' stream holds), then
// the scenarios' own caveats (what each broker keeps, what its acknowledgement means)
for (const r of runs) for (const n of r.result?.notes || []) notes.push(`${r.row} rep ${r.rep} on ${r.broker}: ${n}`);
for (const sc of scenarios) {
  if (!sc.notes) continue;
  const on = ran.filter((b) => !sc.brokers || sc.brokers.includes(b));
  const mine = runs.filter((r) => r.scenario === sc.name);
  if (mine.length) for (const n of sc.notes(ctx, on, mine)) notes.push(`${sc.name}: ${n}`);
}
const labels = Object.fromEntries(Object.entries(brokerInfo).map(([k, v]) => [k, v.label]));
const elapsed = (Date.now() - started) / 1000;
const meta = [
  `date ${machine.date}, git ${machine.git_commit}${machine.git_dirty ? ' (uncommitted changes)' : ''}`,
  `machine: ${machine.cores} × ${machine.cpu_model}, ${machine.mem_gb} GB, ${machine.kernel}, load average at start ${machine.loadavg_at_start.join(' ')}`,
  `software: Node ${machine.node}, ${ran.map((b) => brokerInfo[b].version).join(', ')}, gcc ${machine.gcc}`,
  `settings: ${ctx.reps} repetition(s), brokers alternating per repetition, ${ctx.duration} s measured after ${ctx.warmup} s warmup, payload ${ctx.payload} B, ` +
    `batched rows B=${ctx.batch} packets per write, idle connections ${ctx.conns.toLocaleString('en-US')}, latency rate ${ctx.rate.toLocaleString('en-US')} msg/s${quick ? ' (--quick)' : ''}`,
  `pinning: broker on CPU ${ctx.brokerCpu ?? 'any'}, loadgen on CPU ${ctx.loadgenCpu ?? 'any'}; each run starts a fresh broker on a free loopback port; total ${Math.round(elapsed)} s`,
  'cells are medians; spread is min–max over the repetitions',
];
let md = markdown({ rows, brokers: ran, labels, meta, notes, saturation });
if (wantBridge) {
  const { runBridgeBench } = await import('./bridge.mjs');
  const r = await runBridgeBench({ count: Math.round(numOpt('bridge-count', quick ? 20_000 : 1_000_000)), payload: ctx.payload, window: 1000, publishers: 4 });
  md += `\n${r.markdown}\n`;
}
mkdirSync(ctx.outDir, { recursive: true });
writeFileSync(path.join(ctx.outDir, 'latest.md'), md);
writeFileSync(path.join(ctx.outDir, 'latest.json'), `${JSON.stringify({
  machine,
  settings: { ...ctx, root: undefined, benchDir: undefined, outDir: undefined, loadgen: undefined, brokers: ran, scenarios: scenarios.map((s) => s.name) },
  brokers: brokerInfo,
  rows: rows.map((r) => ({ ...r })),
  runs,
  notes,
  elapsed_s: elapsed,
}, null, 2)}\n`);
process.stdout.write(`\n${md}\n`);
log(`bench: wrote ${path.relative(root, path.join(ctx.outDir, 'latest.md'))} and latest.json in ${Math.round(elapsed)} s`);
process.exit(runs.some((r) => r.ok) ? 0 : 1);
