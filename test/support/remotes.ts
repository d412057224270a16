import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './free-port.ts'
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node'
import { jetstreamManager, jetstream, type JetStreamManager, type JetStreamClient } from '@nats-io/jetstream'


/** A remote process the test started: stop (SIGTERM) and start again on the same port and files. */
export interface RemoteProcess {
  port: number
  dir: string
  start(): Promise<void>
  stop(): Promise<void>
  /** Sends a signal (SIGSTOP freezes it with its connections open, SIGCONT thaws it). */
  signal(sig: NodeJS.Signals): void
  /** Ends it and removes its files (afterEach). */
  destroy(): Promise<void>
  output: string[]
}

function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const s = createServer()
      // the port is taken once the remote listens
      s.once('error', () => resolve())
      s.listen(port, '127.0.0.1', () => s.close(() => (Date.now() > deadline ? reject(new Error(`nothing listens on ${port}`)) : setTimeout(attempt, 20))))
    }
    attempt()
  })
}

function remoteProcess(cmd: string, args: (dir: string) => string[], port: number, dir: string, extraPorts: number[] = []): RemoteProcess {
  let proc: ChildProcess | null = null
  const output: string[] = []
  const r: RemoteProcess = {
    port,
    dir,
    output,
    async start() {
      const p = spawn(cmd, args(dir), { stdio: ['ignore', 'pipe', 'pipe'] })
      proc = p
      p.stdout?.on('data', (d: Buffer) => output.push(d.toString()))
      p.stderr?.on('data', (d: Buffer) => output.push(d.toString()))
      await Promise.race([
        Promise.all([port, ...extraPorts].map((x) => waitForPort(x))),
        new Promise((_, reject) => p.once('exit', (code) => reject(new Error(`${cmd} exited with ${code}: ${output.join('')}`)))),
      ])
    },
    async stop() {
      const p = proc
      proc = null
      if (p === null || p.exitCode !== null) return
      const exited = new Promise((resolve) => p.once('exit', resolve))
      p.kill('SIGTERM')
      await exited
    },
    signal(sig) {
      proc?.kill(sig)
    },
    async destroy() {
      proc?.kill('SIGCONT')
      await r.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
  return r
}

export interface MosquittoOptions {
  /** user -> password: a password_file made with mosquitto_passwd, anonymous refused. */
  users?: Record<string, string>
  /** A TLS listener (second port) with these PEM files. */
  tls?: { ca: string; cert: string; key: string }
  /** acl_file contents. */
  acl?: string
}

export interface Mosquitto extends RemoteProcess {
  url: string
  tlsPort: number | null
  tlsUrl: string | null
}

/**
 * A port picked free can be taken by another process before the remote binds it (other tests
 * run at the same time): then the remote is started again on another one.
 */
async function onFreshPorts<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start()
    } catch (err) {
      if (attempt >= 5 || !/address already in use/i.test((err as Error).message)) throw err
    }
  }
}

/** Debian's mosquitto on a free loopback port, with persistence (subscribers' sessions survive a restart). */
export function startMosquitto(o: MosquittoOptions = {}): Promise<Mosquitto> {
  return onFreshPorts(() => startMosquittoOnce(o))
}

async function startMosquittoOnce(o: MosquittoOptions): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'edgebus-mosquitto-'))
  const port = await freePort()
  const tlsPort = o.tls ? await freePort() : null
  const lines = [
    // run as root (CI and here), mosquitto would drop to user "mosquitto", who cannot read our temp files
    'user root',
    'per_listener_settings false',
    `persistence true`,
    `persistence_location ${dir}/`,
    'autosave_interval 0',
    'max_queued_messages 0',
    'max_inflight_messages 0',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    `listener ${port} 127.0.0.1`,
  ]
  if (tlsPort !== null && o.tls) lines.push(`listener ${tlsPort} 127.0.0.1`, `cafile ${o.tls.ca}`, `certfile ${o.tls.cert}`, `keyfile ${o.tls.key}`)
  if (o.users) {
    const pw = join(dir, 'passwd')
    writeFileSync(pw, '')
    for (const [u, p] of Object.entries(o.users)) execFileSync('mosquitto_passwd', ['-b', pw, u, p])
    lines.push(`password_file ${pw}`, 'allow_anonymous false')
  } else {
    lines.push('allow_anonymous true')
  }
  if (o.acl !== undefined) {
    writeFileSync(join(dir, 'acl'), o.acl)
    lines.push(`acl_file ${join(dir, 'acl')}`)
  }
  writeFileSync(join(dir, 'mosquitto.conf'), lines.join('\n') + '\n')
  const r = remoteProcess('mosquitto', (d) => ['-c', join(d, 'mosquitto.conf')], port, dir, tlsPort === null ? [] : [tlsPort])
  await r.start().catch(async (err: unknown) => { await r.destroy(); throw err })
  return Object.assign(r, { url: `mqtt://127.0.0.1:${port}`, tlsPort, tlsUrl: tlsPort === null ? null : `mqtts://localhost:${tlsPort}` })
}

export interface NatsServer extends RemoteProcess {
  url: string
  /** A client connection of the test (reconnecting), and JetStream on it. */
  client(): Promise<{ nc: NatsConnection; jsm: JetStreamManager; js: JetStreamClient }>
}

export interface NatsOptions {
  /** Clients must give this token. */
  token?: string
  /** TLS required, with these PEM files. */
  tls?: { cert: string; key: string; ca: string }
  /** Users (a config file's authorization block; permissions as nats-server takes them); the test's client() logs in as the first. */
  users?: Array<{ user: string; password: string; permissions?: Record<string, unknown> }>
}

/** Debian's nats-server with JetStream on a free loopback port; its store survives a restart. */
export function startNats(o: NatsOptions = {}): Promise<NatsServer> {
  return onFreshPorts(() => startNatsOnce(o))
}

async function startNatsOnce(o: NatsOptions): Promise<NatsServer> {
  const dir = mkdtempSync(join(tmpdir(), 'edgebus-nats-'))
  const port = await freePort()
  if (o.users) writeFileSync(join(dir, 'nats.conf'), `authorization ${JSON.stringify({ users: o.users })}\n`)
  const extra = [...(o.token !== undefined ? ['--auth', o.token] : []), ...(o.tls ? ['--tls', '--tlscert', o.tls.cert, '--tlskey', o.tls.key] : []), ...(o.users ? ['-c', join(dir, 'nats.conf')] : [])]
  const login = o.users?.[0]
  const r = remoteProcess('nats-server', (d) => ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', d, ...extra], port, dir)
  await r.start().catch(async (err: unknown) => { await r.destroy(); throw err })
  const conns: NatsConnection[] = []
  const destroy = r.destroy
  return Object.assign(r, {
    url: o.tls ? `tls://localhost:${port}` : `nats://127.0.0.1:${port}`,
    async client() {
      const nc = await natsConnect({ servers: `127.0.0.1:${port}`, ...(login ? { user: login.user, pass: login.password } : {}), ...(o.token !== undefined ? { token: o.token } : {}), ...(o.tls ? { tls: { caFile: o.tls.ca } } : {}) })
      conns.push(nc)
      return { nc, jsm: await jetstreamManager(nc), js: jetstream(nc) }
    },
    async destroy() {
      await Promise.all(conns.splice(0).map((c) => c.close().catch(() => {})))
      await destroy()
    },
  })
}

export interface NatsClusterNode extends RemoteProcess {
  url: string
  name: string
}

/**
 * `size` nats-server processes with JetStream in one cluster on loopback (routes between all, a
 * cluster name, a server name each, a store dir each): what replicated streams need. Each node
 * can be killed (signal('SIGKILL')) and started again on its own store dir.
 */
export async function startNatsCluster(size: number): Promise<NatsClusterNode[]> {
  const ports = await Promise.all(Array.from({ length: size }, () => freePort()))
  const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()))
  const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`).join(',')
  const nodes = ports.map((port, i): NatsClusterNode => {
    const name = `n${i + 1}`
    const r = remoteProcess('nats-server', (d) => ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', d, '-n', name,
      '--cluster_name', 'edgebus-test', '--cluster', `nats://127.0.0.1:${routePorts[i]}`, '--routes', routes], port, mkdtempSync(join(tmpdir(), `edgebus-nats-${name}-`)), [routePorts[i] as number])
    return Object.assign(r, { url: `nats://127.0.0.1:${port}`, name })
  })
  try {
    await Promise.all(nodes.map((n) => n.start()))
  } catch (err) {
    await Promise.all(nodes.map((n) => n.destroy()))
    throw err
  }
  return nodes
}
