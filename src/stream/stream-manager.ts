import { readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import { mkdirDurableSync, writeFileDurable } from '../core/fsync.ts'
import type { Logger } from '../core/log.ts'
import type { Router } from '../router/router.ts'
import { Stream, type StreamInfo } from './stream.ts'
import { StreamConsumers, type ServerPublish } from './consumer-manager.ts'
import { checkNoOverlap, describeStreamDefinition, parseStreamDefinition, type StreamDefinition } from './stream-config.ts'

/** Runtime-created stream definitions, kept beside the journals. */
const DEFINITIONS_FILE = 'streams.json'

/**
 * Every stream of the server: those declared in the config file (fixed: change them there) and
 * those created at run time through the HTTP API or `edgebus stream add` (kept in
 * <dataDir>/streams/streams.json). Each stream is a store on the router for each of its subjects.
 */
export class StreamManager {
  readonly #router: Router
  readonly #dir: string
  readonly #log: Logger
  readonly #streams = new Map<string, Stream>()
  readonly #consumers = new Map<string, StreamConsumers>()
  readonly #publish: ServerPublish
  readonly #fromConfig = new Set<string>()
  #chain: Promise<unknown> = Promise.resolve()

  private constructor(router: Router, dir: string, log: Logger, publish: ServerPublish) {
    this.#publish = publish
    this.#router = router
    this.#dir = dir
    this.#log = log
  }

  static async open(router: Router, dataDir: string, configured: readonly StreamDefinition[], log: Logger, publish: ServerPublish): Promise<StreamManager> {
    const m = new StreamManager(router, join(dataDir, 'streams'), log, publish)
    const saved = await m.#readDefinitions()
    const all: StreamDefinition[] = [...configured]
    for (const def of saved) {
      if (configured.some((c) => c.name === def.name)) {
        log.warn({ stream: def.name }, 'stream is declared in the config file and was also created at run time: the config file wins')
        continue
      }
      all.push(def)
    }
    for (const def of all) checkNoOverlap(def, all)
    for (const def of configured) m.#fromConfig.add(def.name)
    for (const def of all) await m.#start(def)
    return m
  }

  list(): StreamInfo[] {
    return [...this.#streams.values()].map((s) => s.info())
  }

  /** Streams whose journal cannot append now (a full disk), and consumers whose state cannot be written, with the reason. */
  failures(): Array<{ store: string; code: string; message: string }> {
    const out: Array<{ store: string; code: string; message: string }> = []
    for (const s of this.#streams.values()) {
      const f = s.journal.failure
      if (f !== null) out.push({ store: `stream ${s.name}`, code: f.code, message: f.message })
      for (const c of this.#consumers.get(s.name)?.failures() ?? []) out.push({ store: `consumer ${s.name}/${c.consumer}`, code: c.code, message: c.message })
    }
    return out
  }

  get(name: string): Stream {
    const s = this.#streams.get(name)
    if (!s) throw new EdgebusError('ESTREAM_NOT_FOUND', `no stream is named "${name}"`, { stream: name })
    return s
  }

  /** The durable consumers of a stream. */
  consumers(name: string): StreamConsumers {
    this.get(name)
    return this.#consumers.get(name) as StreamConsumers
  }

  /** A client went away: its unacknowledged consumer messages become deliverable to others. */
  releaseClient(client: string): void {
    for (const c of this.#consumers.values()) c.release(client)
  }

  describe(name: string): Record<string, unknown> {
    const s = this.get(name)
    return { config: describeStreamDefinition(s.definition), source: this.#fromConfig.has(name) ? 'config' : 'api', state: s.info() }
  }

  /** Creates a stream from a user's definition. */
  add(raw: unknown): Promise<StreamInfo> {
    return this.#serial(async () => {
      const def = parseStreamDefinition(raw)
      if (this.#streams.has(def.name)) throw new EdgebusError('ESTREAM_EXISTS', `a stream named "${def.name}" exists already; edit it instead`, { stream: def.name })
      checkNoOverlap(def, this.#definitions())
      const stream = await this.#start(def)
      await this.#saveDefinitions()
      this.#log.info({ stream: def.name, subjects: def.subjects }, 'stream created')
      return stream.info()
    })
  }

  /**
   * Changes a run-time stream's definition: the settings `raw` names, the others kept as they are
   * (an edit of maxAge leaves subjects and maxMsgs alone). Its journal is kept.
   */
  edit(name: string, raw: unknown): Promise<StreamInfo> {
    return this.#serial(async () => {
      const old = this.get(name)
      this.#refuseConfigured(name, 'edit')
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
        throw new EdgebusError('ESTREAM_INVALID', `an edit of stream "${name}" is an object of the settings to change, like {"maxAge": "2d"}`, { stream: name })
      }
      const def = parseStreamDefinition({ ...describeStreamDefinition(old.definition), ...raw, name })
      checkNoOverlap(def, this.#definitions())
      await this.#stop(old)
      const stream = await this.#start(def)
      await this.#saveDefinitions()
      this.#log.info({ stream: name }, 'stream changed')
      return stream.info()
    })
  }

  /** Deletes a run-time stream and its journal. */
  remove(name: string): Promise<void> {
    return this.#serial(async () => {
      const s = this.get(name)
      this.#refuseConfigured(name, 'delete')
      await this.#stop(s)
      await rm(join(this.#dir, name), { recursive: true, force: true })
      await this.#saveDefinitions()
      this.#log.info({ stream: name }, 'stream deleted')
    })
  }

  /** Drops every message of a stream; its sequence numbers go on from where they were. */
  purge(name: string): Promise<number> {
    return this.#serial(() => this.get(name).journal.purge())
  }

  async close(): Promise<void> {
    await this.#chain.catch(() => {})
    for (const s of this.#streams.values()) await this.#stop(s)
  }

  #refuseConfigured(name: string, what: string): void {
    if (this.#fromConfig.has(name)) {
      throw new EdgebusError('ESTREAM_CONFIGURED', `stream "${name}" is declared in the config file: ${what} it there and restart`, { stream: name })
    }
  }

  #definitions(): StreamDefinition[] {
    return [...this.#streams.values()].map((s) => s.definition)
  }

  async #start(def: StreamDefinition): Promise<Stream> {
    mkdirDurableSync(this.#dir)
    const stream = await Stream.open(def, this.#dir, this.#log)
    // visible only once its consumers are open: a request between the two found no consumers
    this.#consumers.set(def.name, await StreamConsumers.open(stream, this.#log, this.#publish))
    this.#streams.set(def.name, stream)
    for (const f of def.subjects) this.#router.addStore(f, stream)
    return stream
  }

  async #stop(stream: Stream): Promise<void> {
    for (const f of stream.definition.subjects) this.#router.removeStore(f, stream)
    this.#streams.delete(stream.name)
    await this.#consumers.get(stream.name)?.close() // consumers read the journal: they go first
    this.#consumers.delete(stream.name)
    await stream.close()
  }

  async #readDefinitions(): Promise<StreamDefinition[]> {
    let text: string
    try {
      text = await readFile(join(this.#dir, DEFINITIONS_FILE), 'utf8')
    } catch {
      return []
    }
    try {
      return (JSON.parse(text) as unknown[]).map((d, i) => parseStreamDefinition(d, `${DEFINITIONS_FILE} entry ${i}`))
    } catch (err) {
      // never refuse to start over it: the journals stay on disk, the definitions can be added again
      this.#log.error({ err: (err as Error).message, file: join(this.#dir, DEFINITIONS_FILE) }, 'run-time stream definitions unreadable: set aside')
      await rename(join(this.#dir, DEFINITIONS_FILE), join(this.#dir, `${DEFINITIONS_FILE}.damaged`)).catch(() => {})
      return []
    }
  }

  async #saveDefinitions(): Promise<void> {
    const defs = this.#definitions().filter((d) => !this.#fromConfig.has(d.name)).map(describeStreamDefinition)
    const file = join(this.#dir, DEFINITIONS_FILE)
    mkdirDurableSync(this.#dir)
    // synced before the answer: after a power cut an empty streams.json would hide every run-time stream
    await writeFileDurable(file, JSON.stringify(defs, null, 2))
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(fn, fn)
    this.#chain = next.catch(() => {})
    return next
  }
}
