import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { WebSocket } from 'ws'
import { ROOT, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, sleep } from '../support/mqtt.ts'

/**
 * What the fuzzers share: a seeded PRNG, the budget (inputs in `npm test`, seconds in `npm run fuzz`),
 * a record of the last inputs for the failure report, and the server's health checks.
 */

// ---- PRNG -------------------------------------------------------------------------------------

/** sfc32 seeded through splitmix32: small, fast and good enough to drive a fuzzer. */
export class Rng {
  #a: number
  #b: number
  #c: number
  #d: number

  constructor(seed: number) {
    let s = seed >>> 0
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.#a = next()
    this.#b = next()
    this.#c = next()
    this.#d = next()
    for (let i = 0; i < 12; i++) this.u32()
  }

  u32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0
    this.#d = (this.#d + 1) >>> 0
    this.#a = this.#b ^ (this.#b >>> 9)
    this.#b = (this.#c + (this.#c << 3)) >>> 0
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0
    this.#c = (this.#c + t) >>> 0
    return t
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n)
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1)
  }

  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T
  }

  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(items: ReadonlyArray<readonly [number, T]>): T {
    let total = 0
    for (const [w] of items) total += w
    let r = this.int(total)
    for (const [w, v] of items) {
      if (r < w) return v
      r -= w
    }
    return (items[items.length - 1] as readonly [number, T])[1]
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n)
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff
    return b
  }

  /** Short sizes most of the time, now and then a big one (fuzzers find most with small inputs). */
  size(small: number, big: number): number {
    return this.chance(0.95) ? this.int(small + 1) : this.int(big + 1)
  }
}

/** The seed of input number `i`: every connection's inputs can be regenerated from (seed, i). */
export function deriveSeed(seed: number, i: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x27d4eb2d) + Math.imul(i + 1, 0x165667b1)) >>> 0
}

// ---- budget -----------------------------------------------------------------------------------

/** `npm run fuzz` sets EDGEBUS_FUZZ_SECONDS; `npm test` runs a fixed number of inputs instead. */
export const FUZZ_SECONDS = Number(process.env.EDGEBUS_FUZZ_SECONDS ?? 0) || 0

export function fuzzSeed(): number {
  const env = process.env.EDGEBUS_FUZZ_SEED
  if (env !== undefined && env !== '') return Number(env) >>> 0
  return (Date.now() ^ (process.pid << 16) ^ Math.floor(Math.random() * 0x1_0000_0000)) >>> 0
}

/** vitest's timeout for a fuzz test: a generous bound in `npm test`, the run plus its checks otherwise. */
export function fuzzTimeout(defaultMs: number): number {
  return FUZZ_SECONDS > 0 ? (FUZZ_SECONDS + 90) * 1000 : defaultMs
}

export class Budget {
  readonly #inputs: number
  readonly #until: number
  readonly started = Date.now()
  inputs = 0

  /** `inputs` in a default run; EDGEBUS_FUZZ_SECONDS (times `share` of the run) when set. */
  constructor(inputs: number, share = 1) {
    this.#inputs = FUZZ_SECONDS > 0 ? Infinity : inputs
    this.#until = FUZZ_SECONDS > 0 ? this.started + FUZZ_SECONDS * 1000 * share : Infinity
  }

  done(): boolean {
    return this.inputs >= this.#inputs || Date.now() >= this.#until
  }

  get seconds(): number {
    return (Date.now() - this.started) / 1000
  }
}

// ---- the record of recent inputs --------------------------------------------------------------

interface Entry {
  index: number
  label: string
  chunks: Buffer[]
  done: boolean
  note: string
  /** In flight when the server exited: the likely culprits. */
  atExit: boolean
}

/**
 * The last inputs, for the failure report: which ones were still in flight when something broke
 * is usually the most telling, so they are listed first.
 */
export class Recorder {
  readonly #entries: Entry[] = []
  readonly #keep: number

  constructor(readonly name: string, readonly seed: number, keep = 96) {
    this.#keep = keep
  }

  start(index: number, label: string, chunks: Buffer[]): Entry {
    const e: Entry = { index, label, chunks, done: false, note: '', atExit: false }
    this.#entries.push(e)
    if (this.#entries.length > this.#keep) {
      // drop the oldest finished one; in-flight ones stay
      const at = this.#entries.findIndex((x) => x.done)
      this.#entries.splice(at === -1 ? 0 : at, 1)
    }
    return e
  }

  /** Marks the inputs in flight when the server process exits. */
  watch(srv: StartedEdgebus): void {
    srv.proc.once('exit', () => { for (const e of this.#entries) if (!e.done) e.atExit = true })
  }

  /** Entries as text (index, label, note, each chunk in hex), the likely culprits first. */
  dump(limitHex = Infinity, entries = Infinity): string {
    const order = [
      ...this.#entries.filter((e) => e.atExit),
      ...this.#entries.filter((e) => !e.done && !e.atExit),
      ...this.#entries.filter((e) => e.done && !e.atExit).reverse(),
    ]
    return order.slice(0, entries).map((e) => {
      const hex = e.chunks.map((c) => {
        const h = c.toString('hex')
        return h.length > limitHex ? `${h.slice(0, limitHex)}… (${c.length} bytes)` : h
      })
      return `#${e.index} ${e.atExit ? 'IN FLIGHT WHEN THE SERVER EXITED' : e.done ? 'done' : 'IN FLIGHT'} ${e.label}${e.note ? ` [${e.note}]` : ''}\n  ${hex.join('\n  ')}`
    }).join('\n')
  }

  /**
   * The failure report: the seed, a file with every recorded input in full (test-artifacts/fuzz/),
   * and the last few inputs in the message itself.
   */
  report(why: string): string {
    const dir = join(ROOT, 'test-artifacts', 'fuzz')
    const file = join(dir, `${this.name}-seed-${this.seed}.txt`)
    let where = file
    try {
      mkdirSync(dir, { recursive: true })
      writeFileSync(file, `${why}\nEDGEBUS_FUZZ_SEED=${this.seed}\n\n${this.dump()}\n`)
    } catch (err) {
      where = `(not written: ${(err as Error).message})`
    }
    const recent = this.dump(600, 8)
    return `${why}\nfuzz ${this.name}: reproduce with EDGEBUS_FUZZ_SEED=${this.seed}; every recorded input: ${where}\nlast inputs (hex):\n${recent}`
  }
}

// ---- the server and its health ----------------------------------------------------------------

const SESSION_EXPIRY_MS = 1000

/**
 * The server under fuzz: one stream (with a durable consumer) capturing fuzz/#, so PUBLISHes reach
 * the journal and the consumer, and a data dir, so retained messages and sessions are persisted.
 * Sessions expire a second after their connection closes (the default is 7 days): a persistent
 * session keeps its queue and, in aedes, the whole closed client with its unparsed input, by design
 * until it expires, and that state is not what the memory check is after (it waits SESSION_EXPIRY_MS
 * before it measures). Session expiry and resumption still run: the fuzz reuses a few client ids
 * many times a second. No connect rate limit: the fuzz
 * opens about a thousand connections a second from one address, and a refused CONNECT reaches none
 * of the states the fuzz is after.
 */
export async function startTarget(): Promise<StartedEdgebus> {
  const srv = await startEdgebus({
    // the inspector, on a free loopback port, lets the memory check run a full GC (collectGarbage)
    env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --inspect=127.0.0.1:0`.trim() },
    config: {
      streams: [{ name: 'fuzz', subjects: ['fuzz/#'], maxMsgs: 20_000, consumers: [{ name: 'workers', ackWait: '1s', maxDeliver: 3 }] }],
      sessions: { maxQueuedMessages: 50, expiry: `${SESSION_EXPIRY_MS}ms` },
      limits: { connectRate: 0 },
    },
  })
  targets.push(srv)
  return srv
}

const targets: StartedEdgebus[] = []

/** Stops every server startTarget started (afterEach: a test that timed out must not leave one running). */
export async function stopTargets(): Promise<void> {
  await endAllClients()
  await Promise.all(targets.splice(0).map((srv) => srv.stop()))
}

/** Lines Node's inspector prints on stderr (not the server's log). */
const INSPECTOR_LINE = /^(Debugger (listening on|ending on|attached\.)|For help, see: |Waiting for the debugger)/

/**
 * A full garbage collection in the server, through its inspector. An idle Node process may keep
 * tens of MB of garbage for minutes (nothing allocates, so nothing triggers a major GC); after
 * this, what the heap holds is what the server keeps alive.
 */
export async function collectGarbage(srv: StartedEdgebus): Promise<void> {
  const line = srv.output.find((l) => l.startsWith('Debugger listening on '))
  const url = line?.slice('Debugger listening on '.length).trim()
  if (url === undefined) throw new Error('the server has no inspector (startTarget starts it with --inspect)')
  const ws = new WebSocket(url)
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('HeapProfiler.collectGarbage did not answer in 20 s')), 20_000)
      ws.on('error', (err) => { clearTimeout(timer); reject(err) })
      ws.on('open', () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' })))
      ws.on('message', (data: Buffer) => {
        if ((JSON.parse(data.toString()) as { id?: number }).id === 1) { clearTimeout(timer); resolve() }
      })
    })
  } finally {
    ws.close()
  }
}

export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const m = /VmRSS:\s+(\d+) kB/.exec(status)
  return m ? Number(m[1]) * 1024 : 0
}

export const MB = 1024 * 1024

/**
 * The memory bounds after a run, measured after a full GC in the server (collectGarbage), against
 * the level after one at the start. HEAP: what the server keeps alive; legitimate growth is small
 * (retained messages, a few sessions, the journal's index), so 24 MB catches a leak of a few KB per
 * connection in the default run (~3,000 connections) and of a few hundred bytes in `npm run fuzz`.
 * RSS: also native memory (Buffers, sockets, the allocator's free lists), which does not all go
 * back to the system; measured 5-25 MB over the start after the default runs, so 64 MB leaves room
 * for a loaded machine and still catches a native leak of ~20 KB per connection.
 */
export const RSS_SLACK = 64 * MB
export const HEAP_SLACK = 24 * MB

export function alive(srv: StartedEdgebus): boolean {
  return srv.proc.exitCode === null && srv.proc.signalCode === null
}

/**
 * Log lines that show a failure: anything not JSON (a stack trace, a Node warning) and pino lines
 * at error (50) or fatal (60).
 */
export function badLogLines(output: readonly string[]): string[] {
  return output.filter((line) => {
    if (line.trim() === '' || INSPECTOR_LINE.test(line)) return false
    try {
      const msg = JSON.parse(line) as { level?: unknown }
      return typeof msg.level !== 'number' || msg.level >= 50
    } catch {
      return true
    }
  })
}

/** Bad log lines counted by message and error (`http handler failed (URI malformed) ×12`). */
function summarize(lines: readonly string[]): string {
  const counts = new Map<string, number>()
  for (const line of lines) {
    let key = 'not JSON'
    try {
      const m = JSON.parse(line) as { msg?: unknown; err?: unknown }
      key = `${String(m.msg)}${m.err === undefined ? '' : ` (${String(m.err).slice(0, 80)})`}`
    } catch { /* not JSON */ }
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return [...counts].map(([k, n]) => `${k} ×${n}`).join('; ')
}

async function healthz(srv: StartedEdgebus): Promise<{ connections: number }> {
  const res = await fetch(`${srv.httpUrl}/healthz`, { signal: AbortSignal.timeout(5000) })
  return await res.json() as { connections: number }
}

/** Waits until the server counts at most `n` MQTT connections; returns the last count. */
export async function settleConnections(srv: StartedEdgebus, n: number, timeoutMs: number): Promise<number> {
  const until = Date.now() + timeoutMs
  let count = -1
  while (Date.now() < until) {
    count = (await healthz(srv)).connections
    if (count <= n) return count
    await sleep(200)
  }
  return count
}

/** `p`, or an error naming `what` after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms) })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

/**
 * A normal MQTT.js client: connects, subscribes to everything (so every retained message the fuzz
 * left behind is delivered to it), publishes QoS 1 on a subject the stream captures (the PUBACK
 * waits for the journal) and receives its message.
 */
export async function normalClientWorks(srv: StartedEdgebus, tag: string): Promise<void> {
  const c = await connectClient(srv.mqttUrl, { clientId: `fuzz-health-${tag}` })
  try {
    const topic = `fuzz/health/${tag}/${Date.now()}`
    await within(c.client.subscribeAsync('#', { qos: 1 }), 5000, 'SUBSCRIBE #')
    await within(c.client.publishAsync(topic, `ok ${tag}`, { qos: 1 }), 5000, `PUBLISH QoS 1 to ${topic}`)
    const until = Date.now() + 5000
    while (!c.messages.some((m) => m.topic === topic && m.payload === `ok ${tag}`)) {
      if (Date.now() > until) throw new Error(`the normal client did not get its message on ${topic} (${c.messages.length} others)`)
      await sleep(20)
    }
  } finally {
    await c.end()
  }
}

export interface StartLevel {
  rss: number
  heapUsed: number
  connections: number
}

async function heapUsed(srv: StartedEdgebus): Promise<number> {
  const res = await fetch(`${srv.httpUrl}/api/stats`, { signal: AbortSignal.timeout(5000) })
  return (await res.json() as { memory: { heapUsed: number } }).memory.heapUsed
}

/** Memory after a full GC, once the server has settled. */
async function memory(srv: StartedEdgebus): Promise<{ rss: number; heapUsed: number }> {
  await collectGarbage(srv)
  await sleep(500)
  return { rss: rssBytes(srv.proc.pid as number), heapUsed: await heapUsed(srv) }
}

/** The levels the health check compares with, taken once the server has served one normal client. */
export async function measureStart(srv: StartedEdgebus): Promise<StartLevel> {
  await normalClientWorks(srv, 'before')
  const connections = await settleConnections(srv, 0, 5000)
  return { ...await memory(srv), connections }
}

/**
 * The acceptance of issue #8 after a fuzz run: the server is up, has closed every fuzz connection,
 * serves a normal client, logged no error, and its memory came back near the start level.
 * Returns what is wrong (empty when healthy).
 */
export async function checkHealth(srv: StartedEdgebus, start: StartLevel, tag: string): Promise<string[]> {
  const problems: string[] = []
  if (!alive(srv)) {
    problems.push(`the server exited (code ${srv.proc.exitCode}, signal ${srv.proc.signalCode}); its last output:\n${srv.output.slice(-30).join('\n')}`)
    return problems
  }
  try {
    const left = await settleConnections(srv, start.connections, 15_000)
    if (left > start.connections) problems.push(`${left} MQTT connections still open 15 s after the fuzz (${start.connections} before)`)
  } catch (err) {
    problems.push(`/healthz did not answer: ${(err as Error).message}`)
  }
  try {
    await normalClientWorks(srv, `after-${tag}`)
  } catch (err) {
    problems.push(`a normal MQTT client failed after the fuzz: ${(err as Error).message}`)
  }
  try {
    await sleep(SESSION_EXPIRY_MS + 500) // the fuzz's last sessions expire
    const end = await memory(srv)
    const mem = `RSS ${(start.rss / MB).toFixed(0)} MB -> ${(end.rss / MB).toFixed(0)} MB, heap used ${(start.heapUsed / MB).toFixed(0)} MB -> ${(end.heapUsed / MB).toFixed(0)} MB (after a full GC)`
    console.log(`fuzz ${tag}: ${mem}`)
    if (end.rss >= start.rss + RSS_SLACK || end.heapUsed >= start.heapUsed + HEAP_SLACK) {
      problems.push(`memory did not come back: ${mem}; bounds: RSS start + ${RSS_SLACK / MB} MB, heap start + ${HEAP_SLACK / MB} MB`)
    }
  } catch (err) {
    problems.push(`the memory check failed: ${(err as Error).message}`)
  }
  const bad = badLogLines(srv.output)
  if (bad.length > 0) problems.push(`${bad.length} error/fatal or non-JSON log lines: ${summarize(bad)}\nthe first ones:\n${bad.slice(0, 8).map((l) => l.slice(0, 600)).join('\n')}`)
  if (!alive(srv)) problems.push(`the server exited (code ${srv.proc.exitCode}, signal ${srv.proc.signalCode}) during the health check`)
  return problems
}
