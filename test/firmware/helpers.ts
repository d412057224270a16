/**
 * Helpers for the firmware client tests: an MQTT-aware TCP proxy that sits between a
 * device client and the server (it records every frame and can cut a connection or
 * swallow a packet at a chosen frame), a child-process wrapper that collects stdout
 * lines and stderr, and a server with a stream whose journal the tests read back.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'vitest'
import { Journal } from '../../src/stream/journal.ts'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import type { TestClient } from '../support/mqtt.ts'

export const FIRMWARE = fileURLToPath(new URL('../../firmware-clients', import.meta.url))
export const C_DIR = `${FIRMWARE}/c`
export const PY_DIR = `${FIRMWARE}/micropython`
export const PYTHON = '/usr/bin/python3'

/** One MQTT control packet as it crossed the proxy. */
export interface Frame {
  type: number
  flags: number
  body: Buffer
  /** Index of the TCP connection through the proxy (0 = first). */
  conn: number
}

/**
 * What to do with a frame: pass it on, drop it, pass it on and then cut both sides, or drop
 * it and cut both sides (the sender's peer never sees it, e.g. a PUBACK lost with the link).
 */
export type Verdict = 'forward' | 'drop' | 'forward-then-cut' | 'drop-then-cut'
export type Hook = (frame: Frame, proxy: MqttProxy) => Verdict

/** Splits a byte stream into MQTT frames: fixed header, Remaining Length (§2.2.3), body. */
class FrameSplitter {
  #buf = Buffer.alloc(0)

  push(chunk: Buffer): Array<{ type: number; flags: number; body: Buffer; raw: Buffer }> {
    this.#buf = Buffer.concat([this.#buf, chunk])
    const out = []
    for (;;) {
      let rem = 0
      let i = 1
      let shift = 0
      let complete = false
      while (i < this.#buf.length && i <= 4) {
        const d = this.#buf[i++] as number
        rem |= (d & 0x7f) << shift
        shift += 7
        if (d < 0x80) { complete = true; break }
      }
      if (!complete || this.#buf.length < i + rem) return out
      const raw = this.#buf.subarray(0, i + rem)
      const head = raw[0] as number
      out.push({ type: head >> 4, flags: head & 0x0f, body: raw.subarray(i), raw })
      this.#buf = this.#buf.subarray(i + rem)
    }
  }
}

export interface MqttProxy {
  port: number
  /** Frames from the client, in order, over all connections. */
  fromClient: Frame[]
  /** Frames from the server. */
  fromServer: Frame[]
  connections: number
  close(): Promise<void>
}

/** Starts a proxy on 127.0.0.1 (ephemeral port) in front of 127.0.0.1:targetPort. */
export async function startProxy(targetPort: number, hooks: { client?: Hook; server?: Hook } = {}): Promise<MqttProxy> {
  const sockets = new Set<net.Socket>()
  const proxy: MqttProxy = { port: 0, fromClient: [], fromServer: [], connections: 0, close: async () => {} }
  const server = net.createServer((client) => {
    const conn = proxy.connections++
    const upstream = net.connect(targetPort, '127.0.0.1')
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', () => {})
    }
    // The server side is closed gracefully (FIN after the forwarded bytes), never reset,
    // so a packet forwarded just before a cut is sure to reach the server.
    client.on('close', () => { sockets.delete(client); upstream.end() })
    upstream.on('close', () => { sockets.delete(upstream); client.destroy() })
    const pipe = (from: net.Socket, to: net.Socket, log: Frame[], hook?: Hook): void => {
      const splitter = new FrameSplitter()
      from.on('data', (chunk: Buffer) => {
        for (const f of splitter.push(chunk)) {
          const frame = { type: f.type, flags: f.flags, body: Buffer.from(f.body), conn }
          log.push(frame)
          const verdict = hook ? hook(frame, proxy) : 'forward'
          if (verdict === 'drop') continue
          if (verdict !== 'drop-then-cut') to.write(f.raw)
          if (verdict === 'forward-then-cut' || verdict === 'drop-then-cut') {
            // forward-then-cut from the client: the server gets the packet, the client never
            // sees the answer. The client side is reset, the server side closed gracefully.
            client.destroy()
            return
          }
        }
      })
    }
    pipe(client, upstream, proxy.fromClient, hooks.client)
    pipe(upstream, client, proxy.fromServer, hooks.server)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  proxy.port = (server.address() as net.AddressInfo).port
  proxy.close = () => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  })
  return proxy
}

export const PUBLISH = 3
export const PUBACK = 4
export const CONNECT = 1

/** Decodes the parts of a PUBLISH the tests look at; v5 = the connection spoke MQTT 5. */
export function decodePublish(f: Frame, v5 = false): { topic: string; qos: number; dup: boolean; id: number; userProps: Record<string, string>; payload: string } {
  const b = f.body
  const tl = b.readUInt16BE(0)
  const topic = b.subarray(2, 2 + tl).toString()
  const qos = (f.flags >> 1) & 3
  let i = 2 + tl
  let id = 0
  if (qos) { id = b.readUInt16BE(i); i += 2 }
  const userProps: Record<string, string> = {}
  if (v5) {
    let len = 0
    let shift = 0
    let d: number
    do { d = b[i++] as number; len |= (d & 0x7f) << shift; shift += 7 } while (d & 0x80)
    const end = i + len
    // Only user properties (0x26, a pair of UTF-8 strings) are expected from our clients.
    while (i < end && b[i] === 0x26) {
      const kl = b.readUInt16BE(i + 1)
      const key = b.subarray(i + 3, i + 3 + kl).toString()
      const vl = b.readUInt16BE(i + 3 + kl)
      userProps[key] = b.subarray(i + 5 + kl, i + 5 + kl + vl).toString()
      i += 5 + kl + vl
    }
    i = end
  }
  return { topic, qos, dup: (f.flags & 8) !== 0, id, userProps, payload: b.subarray(i).toString() }
}

/** Protocol level of a CONNECT frame (4 = MQTT 3.1.1, 5 = MQTT 5). */
export const connectLevel = (f: Frame): number => f.body[6] as number

/** The PUBLISH frames a client sent through the proxy, decoded (MQTT 5 ones by their connection's CONNECT). */
export function clientPublishes(p: MqttProxy): Array<ReturnType<typeof decodePublish> & { conn: number }> {
  const v5 = new Set(p.fromClient.filter((f) => f.type === CONNECT && connectLevel(f) === 5).map((f) => f.conn))
  return p.fromClient.filter((f) => f.type === PUBLISH).map((f) => ({ conn: f.conn, ...decodePublish(f, v5.has(f.conn)) }))
}

/**
 * Proxy hooks that break a QoS 1 publisher's connection once per listed payload, at the first
 * send of that message (DUP=0), in the two ways a PUBACK gets lost:
 * - cutAfter: the PUBLISH is forwarded and the connection cut at once, so the server receives
 *   (and stores) the message but the client never sees its PUBACK;
 * - dropAckOf: the server's PUBACK for it is swallowed and the connection cut, so the server
 *   has certainly stored and acknowledged it before the client resends it.
 * Either way the client must reconnect and send the message again (DUP=1, same packet id).
 */
export function cutPlan(o: { cutAfter?: string[]; dropAckOf?: string[] }): { client: Hook; server: Hook } {
  const cutAfter = new Set(o.cutAfter ?? [])
  const dropAckOf = new Set(o.dropAckOf ?? [])
  const v5 = new Set<number>()
  const ackToDrop = new Set<string>() // `${conn}:${packet id}`
  return {
    client: (f) => {
      if (f.type === CONNECT && connectLevel(f) === 5) v5.add(f.conn)
      if (f.type !== PUBLISH) return 'forward'
      const m = decodePublish(f, v5.has(f.conn))
      if (m.dup) return 'forward'
      if (cutAfter.delete(m.payload)) return 'forward-then-cut'
      if (dropAckOf.delete(m.payload)) ackToDrop.add(`${f.conn}:${m.id}`)
      return 'forward'
    },
    server: (f) => (f.type === PUBACK && ackToDrop.delete(`${f.conn}:${f.body.readUInt16BE(0)}`) ? 'drop-then-cut' : 'forward'),
  }
}

export interface Proc {
  proc: ChildProcess
  lines: string[]
  stderr(): string
  /** Resolves when stderr matches re. */
  waitStderr(re: RegExp, timeoutMs?: number): Promise<void>
  /** Resolves with the exit code and the output. */
  exit(timeoutMs?: number): Promise<{ code: number | null; stdout: string[]; stderr: string }>
}

const procs = new Set<ChildProcess>()

/** Spawns a client program; kill leftovers with killAll() in afterEach. */
export function startProc(cmd: string, args: string[], env: Record<string, string> = {}): Proc {
  const proc = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  procs.add(proc)
  const lines: string[] = []
  let err = ''
  let rest = ''
  const waiters: Array<() => void> = []
  proc.stdout!.setEncoding('utf8')
  proc.stdout!.on('data', (d: string) => {
    rest += d
    let i: number
    while ((i = rest.indexOf('\n')) !== -1) { lines.push(rest.slice(0, i)); rest = rest.slice(i + 1) }
  })
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); for (const w of waiters) w() })
  const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => { procs.delete(proc); resolve(code) }))
  return {
    proc,
    lines,
    stderr: () => err,
    waitStderr(re, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${cmd}: no ${re} on stderr in ${timeoutMs} ms: ${err}`)), timeoutMs)
        const check = (): void => { if (re.test(err)) { clearTimeout(t); resolve() } }
        waiters.push(check)
        check()
      })
    },
    async exit(timeoutMs = 15_000) {
      let timer: NodeJS.Timeout | undefined
      const code = await Promise.race([
        exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${cmd} ${args.join(' ')} did not exit in ${timeoutMs} ms\nstdout: ${lines.join('|')}\nstderr: ${err}`)), timeoutMs)
        }),
      ]).finally(() => clearTimeout(timer))
      return { code, stdout: lines, stderr: err }
    },
  }
}

export async function killAll(): Promise<void> {
  await Promise.all([...procs].map((p) => new Promise<void>((resolve) => { p.once('close', () => resolve()); p.kill('SIGKILL') })))
}

/** Resolves once a subscriber has n distinct payloads (duplicates don't count). */
export function waitForPayloads(sub: TestClient, n: number, timeoutMs = 5000): Promise<void> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const got = new Set(sub.messages.map((m) => m.payload)).size
      if (got >= n) resolve()
      else if (Date.now() - started > timeoutMs) reject(new Error(`waited for ${n} distinct payloads, got ${got} in ${sub.messages.length} messages`))
      else setTimeout(check, 10)
    }
    check()
  })
}

/** Runs a command to completion (no stdin: nothing to write into a pipe the child may have closed). */
export async function runProc(cmd: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const res = await startProc(cmd, args, opts.env).exit(opts.timeoutMs ?? 15_000)
  return { code: res.code, stdout: res.stdout.map((l) => `${l}\n`).join(''), stderr: res.stderr }
}

/** The stream the stream tests declare: it captures everything under fw/. */
export const STREAM = 'fw'
export const STREAM_CONFIG = { streams: [{ name: STREAM, subjects: ['fw/#'], duplicateWindow: '2m' }] }

export interface StreamState { messages: number; stored: number; duplicates: number; lastSeq: number; firstSeq: number }
export interface StreamRecord { seq: number; subject: string; payload: string; msgId: string | null }

export interface StreamServer {
  srv: StartedEdgebus
  /** GET /api/streams/fw: the stream's counters. */
  state(): Promise<StreamState>
  /** Stops the server and reads the stream's journal back. */
  records(): Promise<StreamRecord[]>
}

const streamServers = new Set<{ srv: StartedEdgebus; dir: string }>()

/** Starts an edgebus of its own (own data dir) with STREAM_CONFIG; stop them all with stopStreamServers(). */
export async function startStreamServer(): Promise<StreamServer> {
  const dir = mkdtempSync(join(tmpdir(), 'edgebus-fw-stream-'))
  const srv = await startEdgebus({ dir, config: STREAM_CONFIG })
  streamServers.add({ srv, dir })
  return {
    srv,
    async state() {
      const res = await fetch(`${srv.httpUrl}/api/streams/${STREAM}`)
      if (!res.ok) throw new Error(`GET /api/streams/${STREAM}: ${res.status} ${await res.text()}`)
      return ((await res.json()) as { state: StreamState }).state
    },
    async records() {
      await srv.stop()
      const j = await Journal.open(join(dir, 'data', 'streams', STREAM))
      try {
        return [...j.iterate(0)].map((r) => ({ seq: r.seq, subject: r.subject, payload: r.payload.toString(), msgId: r.msgId }))
      } finally {
        await j.close()
      }
    },
  }
}

export async function stopStreamServers(): Promise<void> {
  await Promise.all([...streamServers].map(async (s) => {
    streamServers.delete(s)
    await s.srv.stop()
    rmSync(s.dir, { recursive: true, force: true })
  }))
}

/** Payloads "0".."n-1" in order. */
export const payloads = (n: number): string[] => Array.from({ length: n }, (_, i) => String(i))

/** Payloads "0".."n-1" as a sorted list, to compare with what arrived. */
export const expectedPayloads = (n: number): string[] => Array.from({ length: n }, (_, i) => String(i)).sort()
export const uniqueSorted = (xs: string[]): string[] => [...new Set(xs)].sort()

/**
 * After a run with two cuts: the stream holds each of the n messages once, in order, with these
 * msg-ids, having recognised both resends; a plain subscriber saw at most one extra copy per cut.
 */
export async function expectStoredOnce(s: StreamServer, sub: TestClient, n: number, msgIds: Array<string | undefined>): Promise<void> {
  expect(await s.state()).toMatchObject({ messages: n, stored: n, duplicates: 2, lastSeq: n })
  await waitForPayloads(sub, n)
  expect(sub.messages.length).toBeLessThanOrEqual(n + 2)
  const recs = await s.records()
  expect(recs.map((r) => r.seq)).toEqual(payloads(n).map((i) => Number(i) + 1))
  expect(recs.map((r) => r.payload)).toEqual(payloads(n))
  expect(recs.map((r) => r.msgId)).toEqual(msgIds)
}
