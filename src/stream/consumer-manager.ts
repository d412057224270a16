import { readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import { mkdirDurableSync, writeFileDurable } from '../core/fsync.ts'
import type { Logger } from '../core/log.ts'
import { Consumer, type DeadLetter } from './consumer.ts'
import { checkConsumerFilter, describeConsumerDefinition, parseConsumerDefinition, type ConsumerDefinition } from './consumer-config.ts'
import type { Stream } from './stream.ts'

/** Publishes a message as the server (dead-letter notices). */
export type ServerPublish = (topic: string, payload: Buffer) => Promise<unknown>

interface Open {
  consumer: Consumer
  def: ConsumerDefinition
  unfollow: () => void
  /** Pulls waiting for a message (HTTP long-poll): called once. */
  waiters: Set<() => void>
  /** Push deliveries (MQTT subscriptions) bound to the consumer: called on every onReady. */
  watchers: Set<() => void>
}

/** An ephemeral consumer opened for one client (MQTT `$replay/...`), fed by the stream until closed. */
export interface EphemeralConsumer {
  readonly consumer: Consumer
  close(): Promise<void>
}

/**
 * The durable consumers of one stream: definitions kept as <streamDir>/consumers/<name>.json
 * beside their state files, opened with the stream and fed by its new messages.
 */
export class StreamConsumers {
  readonly #stream: Stream
  readonly #dir: string
  readonly #log: Logger
  readonly #publish: ServerPublish
  readonly #open = new Map<string, Open>()
  readonly #configured = new Set<string>()
  readonly #ephemeral = new Set<Consumer>()

  private constructor(stream: Stream, log: Logger, publish: ServerPublish) {
    this.#stream = stream
    this.#dir = join(stream.journal.dir, 'consumers')
    this.#log = log
    this.#publish = publish
  }

  static async open(stream: Stream, log: Logger, publish: ServerPublish): Promise<StreamConsumers> {
    const c = new StreamConsumers(stream, log, publish)
    // declared with the stream (config file): fixed, changed there
    for (const def of stream.definition.consumers) {
      await c.#start(def)
      c.#configured.add(def.name as string)
    }
    let files: string[] = []
    try {
      files = (await readdir(c.#dir)).filter((f) => f.endsWith('.json'))
    } catch {
      return c
    }
    for (const f of files) {
      if (c.#configured.has(f.slice(0, -'.json'.length))) continue // the declaration wins
      try {
        const def = parseConsumerDefinition(JSON.parse(await readFile(join(c.#dir, f), 'utf8')), stream.name, `consumer file ${f}`)
        await c.#start(def)
      } catch (err) {
        // one bad definition must not keep the stream (or the server) from starting
        log.error({ stream: stream.name, file: f, err: (err as Error).message }, 'consumer definition unreadable: skipped')
      }
    }
    return c
  }

  /** Consumers whose state file cannot be written now, with the reason. */
  failures(): Array<{ consumer: string; code: string; message: string }> {
    const out: Array<{ consumer: string; code: string; message: string }> = []
    for (const [name, o] of this.#open) {
      const f = o.consumer.stateFailure
      if (f !== null) out.push({ consumer: name, code: f.code, message: f.message })
    }
    return out
  }

  list(): Array<Record<string, unknown>> {
    return [...this.#open.values()].map((o) => ({ ...o.consumer.info() }))
  }

  get(name: string): Open {
    const o = this.#open.get(name)
    if (!o) throw new EdgebusError('ECONSUMER_NOT_FOUND', `stream "${this.#stream.name}" has no consumer "${name}"`, { stream: this.#stream.name, consumer: name })
    return o
  }

  describe(name: string): Record<string, unknown> {
    const o = this.get(name)
    return { config: describeConsumerDefinition(o.def), source: this.#configured.has(name) ? 'config' : 'api', state: o.consumer.info() }
  }

  async add(raw: unknown): Promise<Record<string, unknown>> {
    const def = parseConsumerDefinition(raw, this.#stream.name)
    if (def.name === null) throw new EdgebusError('ECONSUMER_INVALID', 'a consumer created through the API needs a "name" (it is durable)')
    if (this.#open.has(def.name)) throw new EdgebusError('ECONSUMER_IN_USE', `stream "${this.#stream.name}" has a consumer "${def.name}" already`, { consumer: def.name })
    checkConsumerFilter(def, this.#stream.definition)
    mkdirDurableSync(this.#dir)
    // synced before the answer: a power cut must not take a consumer it acknowledged away
    await writeFileDurable(join(this.#dir, `${def.name}.json`), JSON.stringify(describeConsumerDefinition(def)))
    const o = await this.#start(def)
    this.#log.info({ stream: this.#stream.name, consumer: def.name }, 'consumer created')
    return o.consumer.info() as unknown as Record<string, unknown>
  }

  async remove(name: string): Promise<void> {
    const o = this.get(name)
    if (this.#configured.has(name)) {
      throw new EdgebusError('ECONSUMER_CONFIGURED', `consumer "${name}" is declared with stream "${this.#stream.name}": remove it there`, { consumer: name })
    }
    await this.#stop(name, o)
    await rm(join(this.#dir, `${name}.json`), { force: true })
    await Consumer.remove(this.#stream.journal.dir, name)
    this.#log.info({ stream: this.#stream.name, consumer: name }, 'consumer deleted')
  }

  /**
   * Up to `batch` messages for `client`; waits up to `waitMs` for the first when none is ready.
   * A message whose subject `mayRead` refuses (an ACL carving it out for this client) is left for
   * others, as if it had not been acked in time.
   */
  async next(name: string, batch: number, waitMs: number, client: string, mayRead: ((subject: string) => boolean) | null = null) {
    const got = await this.#next(name, batch, waitMs, client)
    if (mayRead === null) return got
    const { consumer } = this.get(name)
    return got.filter((d) => {
      if (mayRead(d.subject)) return true
      consumer.nak(d.seq, consumer.definition.ackWait)
      return false
    })
  }

  async #next(name: string, batch: number, waitMs: number, client: string) {
    const o = this.get(name)
    let got = o.consumer.next(batch, client)
    const deadline = Date.now() + waitMs
    while (got.length === 0 && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const wake = (): void => { clearTimeout(t); o.waiters.delete(wake); resolve() }
        const t = setTimeout(wake, Math.max(1, deadline - Date.now()))
        o.waiters.add(wake)
      })
      if (!this.#open.has(name)) break
      got = o.consumer.next(batch, client)
    }
    return got
  }

  /** Calls `fn` whenever consumer `name` may have messages to deliver; returns the unwatch function. */
  watch(name: string, fn: () => void): () => void {
    const o = this.get(name)
    o.watchers.add(fn)
    return () => { o.watchers.delete(fn) }
  }

  /**
   * Opens an ephemeral consumer (no name, no state on disk) that reads the stream from its deliver
   * policy and then follows it; `onReady` as for durable consumers. The caller closes it.
   */
  async openEphemeral(raw: unknown, onReady: () => void): Promise<EphemeralConsumer> {
    const def = parseConsumerDefinition(raw, this.#stream.name, 'ephemeral consumer')
    checkConsumerFilter(def, this.#stream.definition)
    const consumer = await Consumer.open(this.#stream.journal, { ...def, name: null }, {
      log: this.#log,
      onReady,
      onDeadLetter: (dl) => this.#deadLetter(dl),
    })
    const unfollow = this.#stream.follow((rec) => consumer.notify(rec))
    this.#ephemeral.add(consumer)
    return {
      consumer,
      close: async () => {
        unfollow()
        if (!this.#ephemeral.delete(consumer)) return
        await consumer.close()
      },
    }
  }

  /** A client went away: each consumer gives its unacknowledged messages to others now. */
  release(client: string): void {
    for (const o of this.#open.values()) o.consumer.release(client)
  }

  async close(): Promise<void> {
    for (const [name, o] of [...this.#open]) await this.#stop(name, o)
    for (const c of [...this.#ephemeral]) await c.close()
    this.#ephemeral.clear()
  }

  async #start(def: ConsumerDefinition): Promise<Open> {
    const waiters = new Set<() => void>()
    const watchers = new Set<() => void>()
    let turn = 0
    const consumer = await Consumer.open(this.#stream.journal, def, {
      log: this.#log,
      onReady: () => {
        for (const w of [...waiters]) w()
        // bound subscriptions take turns at going first, so competing clients share the messages
        const list = [...watchers]
        const first = list.length > 1 ? turn++ % list.length : 0
        for (let i = 0; i < list.length; i++) (list[(first + i) % list.length] as () => void)()
      },
      onDeadLetter: (dl) => this.#deadLetter(dl),
    })
    const unfollow = this.#stream.follow((rec) => consumer.notify(rec))
    const o: Open = { consumer, def, unfollow, waiters, watchers }
    this.#open.set(def.name as string, o)
    return o
  }

  async #stop(name: string, o: Open): Promise<void> {
    o.unfollow()
    this.#open.delete(name)
    for (const w of [...o.waiters]) w()
    for (const w of [...o.watchers]) w() // bound subscriptions find it closed and let go
    await o.consumer.close()
  }

  /** [issue 4] a message given up on goes to the dead-letter subject with why. */
  #deadLetter(dl: DeadLetter): void {
    const notice = Buffer.from(JSON.stringify({ stream: dl.stream, consumer: dl.consumer, seq: dl.seq, subject: dl.subject, deliveryCount: dl.deliveryCount, reason: dl.reason }))
    this.#publish(dl.deadLetter, notice).catch((err: unknown) => {
      this.#log.error({ stream: dl.stream, consumer: dl.consumer, seq: dl.seq, err: (err as Error).message }, 'dead-letter notice not published')
    })
  }
}
