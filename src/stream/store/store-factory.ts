import { join } from 'node:path'
import { EdgebusError } from '../../core/errors.ts'
import type { JournalLog } from '../journal.ts'
import type { StreamDefinition } from '../stream-config.ts'
import { JournalStore } from './journal-store.ts'
import type { StreamStore } from './stream-store.ts'
import type { StoreNatsConnection } from './jetstream-store.ts'

export interface StoreEnvironment {
  /** The streams directory (a journal lives in <dir>/<name>). */
  streamsDir: string
  /** The cluster's NATS connection, or null on a single node. */
  nats: StoreNatsConnection | null
  log?: JournalLog
}

/** Opens the store a stream definition asks for; the JetStream code is loaded only when one does. */
export async function openStreamStore(def: StreamDefinition, env: StoreEnvironment): Promise<StreamStore> {
  const limits = { ...def.limits, maxMsgSize: def.maxMsgSize }
  if ((def.storage ?? 'journal') === 'journal') {
    return JournalStore.open(join(env.streamsDir, def.name), limits, { fsync: def.fsync, ...(env.log ? { log: env.log } : {}) })
  }
  if (env.nats === null) throw jetstreamNeedsNats(def)
  const { JetStreamStore } = await import('./jetstream-store.ts')
  return JetStreamStore.open(env.nats, { name: def.name, limits, replicas: def.replicas ?? 1 })
}

/** The refusal of storage "jetstream" where no NATS connection is (a single node). */
export function jetstreamNeedsNats(def: StreamDefinition): EdgebusError {
  return new EdgebusError('ESTREAM_INVALID', `stream "${def.name}": storage "jetstream" needs a NATS connection (the cluster section of the config); use storage "journal" on a single node`, { key: 'storage', value: def.storage })
}
