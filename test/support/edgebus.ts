import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const BUNDLE = join(ROOT, 'dist', 'edgebus.mjs')

export interface StartedEdgebus {
  proc: ChildProcess
  mqttPort: number
  httpPort: number
  /** NATS client protocol port (0 when nats.enabled is false). */
  natsPort: number
  /** MQTT over TLS port (tls.cert configured), else null. */
  tlsPort: number | null
  mqttUrl: string
  wsUrl: string
  httpUrl: string
  /** Working directory of the server (its data dir lives here unless configured otherwise). */
  dir: string
  /** Every stdout/stderr line so far. */
  output: string[]
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>
}

export interface StartOptions {
  args?: string[]
  /** Written as edgebus.json in the server's working directory. */
  config?: Record<string, unknown>
  env?: Record<string, string>
  /** Command to run instead of `node dist/edgebus.mjs` (e.g. the single executable). */
  command?: string[]
  /** Reuse a working directory (restart tests). */
  dir?: string
}

/**
 * Starts the built server (dist/edgebus.mjs, built by `npm test` before vitest runs) on 127.0.0.1
 * with ephemeral ports, and resolves once it logged 'edgebus ready'.
 */
export async function startEdgebus(opts: StartOptions = {}): Promise<StartedEdgebus> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'edgebus-test-'))
  if (opts.config) writeFileSync(join(dir, 'edgebus.json'), JSON.stringify(opts.config))
  const [cmd, ...cmdArgs] = opts.command ?? [process.execPath, BUNDLE]
  const proc = spawn(cmd as string, [...cmdArgs, 'serve', '--host', '127.0.0.1', '--mqtt-port', '0', '--http-port', '0', '--nats-port', '0', ...(opts.args ?? [])], {
    cwd: dir,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const output: string[] = []
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  const ready = new Promise<{ mqttPort: number; httpPort: number; natsPort?: number; tlsPort?: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`edgebus did not start in 10 s:\n${output.join('\n')}`)), 10_000)
    const onLine = (line: string): void => {
      output.push(line)
      if (line.includes('"edgebus ready"')) {
        const msg = JSON.parse(line) as { mqttPort: number; httpPort: number; natsPort?: number; tlsPort?: number }
        clearTimeout(timer)
        resolve(msg)
      }
    }
    lines(proc.stdout!, onLine)
    lines(proc.stderr!, onLine)
    exited.then((code) => { clearTimeout(timer); reject(new Error(`edgebus exited with ${code} before it was ready:\n${output.join('\n')}`)) })
  })
  let started: { mqttPort: number; httpPort: number; natsPort?: number; tlsPort?: number }
  try {
    started = await ready
  } catch (err) {
    // a server that did not say it is ready (a timeout) would outlive the test run
    if (proc.exitCode === null) proc.kill('SIGKILL')
    throw err
  }
  const { mqttPort, httpPort, natsPort, tlsPort } = started
  return {
    proc,
    mqttPort,
    httpPort,
    natsPort: natsPort ?? 0,
    tlsPort: tlsPort ?? null,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    wsUrl: `ws://127.0.0.1:${httpPort}/mqtt`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    dir,
    output,
    async stop() {
      if (proc.exitCode !== null) return proc.exitCode
      proc.kill('SIGTERM')
      const code = await exited
      if (!opts.dir) rmSync(dir, { recursive: true, force: true })
      return code
    },
    async kill() {
      if (proc.exitCode === null) proc.kill('SIGKILL')
      await exited
    },
  }
}

function lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let rest = ''
  stream.setEncoding('utf8')
  stream.on('data', (chunk: string) => {
    rest += chunk
    let i: number
    while ((i = rest.indexOf('\n')) !== -1) {
      onLine(rest.slice(0, i))
      rest = rest.slice(i + 1)
    }
  })
}

/** Runs a command to completion; resolves with its exit code and output. */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; cwd?: string; env?: Record<string, string> } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${cmd} ${args.join(' ')} timed out\n${stdout}\n${stderr}`)) }, opts.timeoutMs ?? 15_000)
    child.on('error', reject)
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
    child.stdin.on('error', () => {}) // a command that exits without reading its input (EPIPE)
    child.stdin.end(opts.input ?? '')
  })
}

/** Starts a long-running command and collects its stdout lines. */
export function spawnLines(cmd: string, args: string[], env: Record<string, string> = {}): { proc: ChildProcess; lines: string[]; waitFor(n: number, timeoutMs?: number): Promise<string[]> } {
  const proc = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const out: string[] = []
  const waiters: Array<() => void> = []
  lines(proc.stdout!, (l) => { out.push(l); waiters.forEach((w) => w()) })
  let err = ''
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  return {
    proc,
    lines: out,
    waitFor(n, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => { if (out.length >= n) { clearTimeout(t); resolve(out.slice()) } }
        const t = setTimeout(() => reject(new Error(`${cmd}: waited for ${n} lines, got ${out.length}: ${out.join(' | ')} ${err}`)), timeoutMs)
        waiters.push(check)
        check()
      })
    },
  }
}

/** Resolves once a client of `srv` holds a subscription to `filter` (MQTT syntax): a CLI started as a child has subscribed. */
export async function waitForSubscription(srv: StartedEdgebus, filter: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const res = await fetch(`${srv.httpUrl}/api/connections`).catch(() => null)
    const body = res?.ok ? (await res.json()) as { connections: Array<{ subscriptions: string[] }> } : { connections: [] }
    if (body.connections.some((c) => c.subscriptions.includes(filter))) return
    if (Date.now() > deadline) throw new Error(`no client subscribed to ${filter} within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
