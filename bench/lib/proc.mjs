// Process helpers for the benchmark harness: every child is tracked by PID and
// only those are ever signalled; /proc readers; loopback port helpers.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';

const live = new Map(); // pid -> ChildProcess, only processes this harness started

/** Spawn a child and remember its PID until it exits. */
export function spawnTracked(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  if (child.pid) {
    live.set(child.pid, child);
    child.once('exit', () => live.delete(child.pid));
  }
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (err) => resolve({ code: -1, signal: null, error: err }));
  });
  return child;
}

export function isAlive(child) {
  return child.exitCode === null && child.signalCode === null;
}

/** SIGTERM, then SIGKILL after graceMs; resolves once the child has exited. */
export async function stopChild(child, graceMs = 3000) {
  if (!child || !isAlive(child)) return;
  try { process.kill(child.pid, 'SIGTERM'); } catch { /* already gone */ }
  const timer = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
  await child.exited;
  clearTimeout(timer);
}

function killAllSync() {
  for (const pid of live.keys()) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

/** Make sure nothing we started outlives the harness (normal exit, error, Ctrl-C). */
export function installCleanup(onInterrupt) {
  process.on('exit', killAllSync);
  let interrupted = false;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, async () => {
      if (interrupted) { killAllSync(); process.exit(130); }
      interrupted = true;
      process.stderr.write(`\nbench: ${sig}, stopping ${live.size} child process(es)\n`);
      await Promise.all([...live.values()].map((c) => stopChild(c, 1000)));
      if (onInterrupt) await onInterrupt();
      process.exit(130);
    });
  }
}

/**
 * Command line that runs cmd pinned to one CPU with the soft RLIMIT_NOFILE raised
 * to the hard limit. `sh` and `taskset` both exec, so the PID is the broker's own.
 */
export function pinnedCommand(cpu, cmd, args, { raiseNofile = false } = {}) {
  const pin = cpu === null || cpu === undefined ? '' : `taskset -c ${Number(cpu)} `;
  // 65536 if allowed (root with CAP_SYS_RESOURCE), else the hard limit
  const ulimit = raiseNofile ? '{ ulimit -n 65536 || ulimit -n "$(ulimit -Hn)"; } 2>/dev/null; ' : '';
  return ['sh', ['-c', `${ulimit}exec ${pin}"$@"`, 'sh', cmd, ...args]];
}

/** Run to completion, collecting output; SIGKILL after timeoutMs. */
export function runCapture(cmd, args, { timeoutMs = 60000, onStderrLine, ...opts } = {}) {
  const child = spawnTracked(cmd, args, opts);
  let stdout = '';
  let stderr = '';
  let pendingLine = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => {
    stderr += d;
    if (!onStderrLine) return;
    pendingLine += d;
    let nl;
    while ((nl = pendingLine.indexOf('\n')) >= 0) {
      onStderrLine(pendingLine.slice(0, nl));
      pendingLine = pendingLine.slice(nl + 1);
    }
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
  }, timeoutMs);
  return child.exited.then(({ code, signal, error }) => {
    clearTimeout(timer);
    return { code, signal, error, timedOut, stdout, stderr, pid: child.pid };
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function tryConnect(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok) => { s.removeAllListeners(); s.destroy(); resolve(ok); };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(500, () => done(false));
  });
}

/** Wait until host:port accepts a TCP connection; fails early if the child exits. */
export async function waitForPort(host, port, child, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && !isAlive(child)) throw new Error(`exited before listening (code ${child.exitCode}, signal ${child.signalCode})`);
    if (await tryConnect(host, port)) return;
    await sleep(50);
  }
  throw new Error(`port ${port} not accepting connections after ${timeoutMs} ms`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resident set size in KiB (VmRSS), or null. */
export function rssKb(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** utime + stime in seconds from /proc/PID/stat, or null. */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
    const ticks = Number(fields[11]) + Number(fields[12]); // utime (14), stime (15)
    return ticks / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

/**
 * CPU-seconds the whole machine spent in tasks (user + nice + system, all CPUs) since boot, from
 * /proc/stat, or null: like loadgen's, for the share of "other processes" in a measured window.
 */
export function machineBusySeconds() {
  try {
    const v = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    return (v[0] + v[1] + v[2]) / 100; // USER_HZ; irq/softirq time is not charged to tasks
  } catch {
    return null;
  }
}

/** Soft RLIMIT_NOFILE of a process, from /proc/PID/limits, or null. */
export function nofileLimit(pid) {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : null;
  } catch {
    return null;
  }
}

/** The name the kernel has for a PID (to check the exec chain landed on the broker). */
export function procComm(pid) {
  try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); } catch { return null; }
}
