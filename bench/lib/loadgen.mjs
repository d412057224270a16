// Building and running bench/loadgen.c.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { pinnedCommand, runCapture } from './proc.mjs';

/** Compile the generator with gcc -O2 into bench/bin/ (git-ignored). Returns the binary path. */
export function buildLoadgen(benchDir) {
  const out = path.join(benchDir, 'bin', 'loadgen');
  mkdirSync(path.dirname(out), { recursive: true });
  execFileSync('gcc', ['-O2', '-Wall', '-o', out, path.join(benchDir, 'loadgen.c')], { stdio: ['ignore', 'inherit', 'inherit'] });
  return out;
}

/**
 * Run one loadgen scenario against a running broker.
 * args: scenario-specific flags (e.g. ['-n', '8']); the common ones are added here.
 * Resolves to the parsed JSON line plus { ok, error? }.
 */
export async function runLoadgen(ctx, broker, mode, args, { batch, duration = ctx.duration, warmup = ctx.warmup, onStderrLine } = {}) {
  const argv = [mode, '-h', '127.0.0.1', '-p', String(broker.port), '-m', String(ctx.payload), '-d', String(duration), '-w', String(warmup), '-b', String(broker.pid)];
  if (batch) argv.push('-B', String(batch));
  argv.push(...args);
  const [cmd, cmdArgs] = pinnedCommand(ctx.loadgenCpu, ctx.loadgen, argv);
  const timeoutMs = (warmup + duration + 60) * 1000 + (ctx.conns / 200) * 1000;
  const res = await runCapture(cmd, cmdArgs, { timeoutMs, onStderrLine });
  const line = res.stdout.trim().split('\n').filter(Boolean).pop();
  let parsed = null;
  try { parsed = line ? JSON.parse(line) : null; } catch { /* reported below */ }
  const stderrTail = res.stderr.trim().split('\n').slice(-5).join(' | ');
  if (!parsed || !parsed.ok || res.code !== 0) {
    const why = res.timedOut ? 'timed out' : `exit ${res.code ?? res.signal}`;
    return { ...(parsed || {}), ok: false, error: `loadgen ${mode} ${why}${stderrTail ? `: ${stderrTail}` : ''}`, argv };
  }
  return { ...parsed, argv };
}
