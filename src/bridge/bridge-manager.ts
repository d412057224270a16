import { readdir, readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import type { Logger } from '../core/log.ts'
import { Consumer } from '../stream/consumer.ts'
import { consumerStatePath } from '../stream/consumer-state.ts'
import type { StreamManager } from '../stream/stream-manager.ts'
import { Bridge, type BridgeInfo, type LocalPublish } from './bridge.ts'
import { outboxName, type BridgeDefinition } from './bridge-config.ts'
import type { RemoteConnector, RemoteOptions } from './remote.ts'

/**
 * The bridges of the server, from the config file's `bridges` list. Started after the streams
 * (their outboxes are streams) and closed before them. The remote clients load only when a
 * bridge of their kind is configured.
 */
export class BridgeManager {
  readonly #bridges = new Map<string, Bridge>()

  private constructor() {}

  static async start(defs: readonly BridgeDefinition[], streams: StreamManager, publish: LocalPublish, log: Logger): Promise<BridgeManager> {
    const m = new BridgeManager()
    await removeStrayOutboxConsumers(streams, log)
    // every certificate file is read before any bridge starts: one that fails starts none
    const remotes = await Promise.all(defs.map(remoteOptions))
    for (const [i, def] of defs.entries()) {
      const remote = remotes[i] as RemoteOptions
      const connect: RemoteConnector = def.kind === 'mqtt'
        ? (await import('./mqtt-remote.ts')).connectMqtt
        : (await import('./jetstream-remote.ts')).connectJetStream
      const hasOutbox = def.out.length > 0
      const bridge = new Bridge(def, {
        consumers: hasOutbox ? streams.consumers(def.outboxStream) : null,
        stream: hasOutbox ? streams.get(def.outboxStream) : null,
        publish,
        log,
        connect,
        remote,
      })
      m.#bridges.set(def.name, bridge)
      bridge.start()
    }
    return m
  }

  list(): BridgeInfo[] {
    return [...this.#bridges.values()].map((b) => b.info())
  }

  info(name: string): BridgeInfo {
    const b = this.#bridges.get(name)
    if (b === undefined) throw new EdgebusError('EBRIDGE_NOT_FOUND', `no bridge is named "${name}" (bridges are declared in the config file's "bridges" list)`, { bridge: name })
    return b.info()
  }

  async close(): Promise<void> {
    await Promise.all([...this.#bridges.values()].map((b) => b.close()))
    this.#bridges.clear()
  }
}

async function remoteOptions(def: BridgeDefinition): Promise<RemoteOptions> {
  const pem = async (key: 'cert' | 'key' | 'ca'): Promise<Buffer | null> => {
    const path = def[key]
    if (path === null) return null
    try {
      return await readFile(path)
    } catch (err) {
      throw new EdgebusError('EBRIDGE_INVALID', `bridge "${def.name}": ${key} file ${path} cannot be read (${(err as Error).message}); fix the path in the config file`, { bridge: def.name, key })
    }
  }
  return {
    name: def.name,
    username: def.username,
    password: def.password,
    token: def.token,
    cert: await pem('cert'),
    key: await pem('key'),
    ca: await pem('ca'),
    clientId: def.clientId,
    mqttVersion: def.mqttVersion,
    connectTimeout: def.connectTimeout,
    ackTimeout: def.ackTimeout,
    keepalive: def.keepalive,
    persistentSession: def.in.length > 0,
  }
}

/**
 * A renamed (or removed) bridge leaves the state of its outbox consumer, `bridge-<old name>`, on
 * disk: no bridge opens it any more, and a bridge given that name again later would resume from a
 * stale cursor. Removed at the start, with a log line: a consumer state file named like an outbox
 * consumer that no stream has open (an API consumer of that name is open, so it stays).
 */
async function removeStrayOutboxConsumers(streams: StreamManager, log: Logger): Promise<void> {
  const prefix = outboxName('')
  for (const s of streams.list()) {
    const stream = streams.get(s.name)
    let files: string[]
    try {
      files = await readdir(dirname(consumerStatePath(stream.journal.dir, 'x')))
    } catch {
      continue
    }
    const open = new Set(streams.consumers(s.name).list().map((c) => c.name))
    for (const f of files) {
      if (!f.startsWith(prefix) || !f.endsWith('.state')) continue
      const name = f.slice(0, -'.state'.length)
      if (open.has(name)) continue
      try {
        await Consumer.remove(stream.journal.dir, name)
        log.info({ stream: s.name, consumer: name }, 'removed the outbox consumer of a bridge that is no longer configured (renamed or removed)')
      } catch (err) {
        log.warn({ stream: s.name, consumer: name, err: (err as Error).message }, 'could not remove the outbox consumer of a bridge that is no longer configured')
      }
    }
  }
}
