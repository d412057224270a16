import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { FilePersistence } from '../../src/persistence/file-persistence.ts'
import type { StoredPacket } from '../../src/persistence/records.ts'
import { parseConsumerDefinition } from '../../src/stream/consumer-config.ts'
import { Consumer } from '../../src/stream/consumer.ts'
import { Journal, type FsyncPolicy, type JournalOptions } from '../../src/stream/journal.ts'
import type { RecordInput } from '../../src/stream/record.ts'
import type { CrashFs } from '../support/crash-fs.ts'
import { nextTurn, randomPayload, sleep, type CutContext, type CutVerdict, type Scenario } from './harness.ts'

/**
 * The scenarios of the power-loss proof: each drives one store the way the server does, with its
 * files small (tiny segments, low compaction thresholds, a 1 ms sync interval) so that a short
 * run crosses every kind of flush point: group commits, new segments, index and meta files,
 * retention deleting segments, state log compactions and generations, consumer state rewrites.
 */

// --- streams: the journal ------------------------------------------------------------------

interface JournalHistory {
  opts: JournalOptions
  /** Everything appended, by sequence (acknowledged or not). */
  appended: Map<number, { subject: string; payload: Buffer }>
  /** seq -> CrashFs.now() when its `durable` promise resolved (the PUBACK would go then). */
  acked: Map<number, number>
  maxMsgs: number
}

/** Appends a burst of records per round, noting when each one's `durable` resolved; closes the journal. */
async function journalWorkload(root: string, rec: CrashFs, opts: JournalOptions, maxMsgs: number, rounds: number,
  burst: () => RecordInput[], rand: () => number): Promise<JournalHistory> {
  const h: JournalHistory = { opts, appended: new Map(), acked: new Map(), maxMsgs }
  const j = await Journal.open(join(root, 'stream'), opts)
  const waits: Promise<void>[] = []
  for (let r = 0; r < rounds; r++) {
    for (const record of burst()) {
      const a = j.appendQueued(record)
      h.appended.set(a.seq, { subject: record.subject, payload: Buffer.from(record.payload) })
      waits.push(a.durable.then(() => { h.acked.set(a.seq, rec.now()) }))
    }
    if (rand() < 0.5) await nextTurn()
    else await waits[waits.length - 1]
  }
  await Promise.all(waits)
  await j.close()
  return h
}

export function journalScenario(policy: FsyncPolicy, rounds: number): Scenario<JournalHistory> {
  const maxMsgs = 150
  const opts: JournalOptions = { fsync: policy, segmentBytes: 4096, indexIntervalBytes: 512, limits: { maxMsgs } }
  return {
    store: 'stream',
    policy,
    logFile: null,
    run: (root, rec, rand) => journalWorkload(root, rec, opts, maxMsgs, rounds, () => {
      // fsync none: the kernel's flusher writes dirty pages back now and then (dirty_expire)
      if (policy === 'none' && rand() < 0.1) rec.writeback()
      return Array.from({ length: 1 + Math.floor(rand() * 6) }, () => ({ subject: `sensors/${Math.floor(rand() * 5)}`, payload: randomPayload(rand, 8, 400) }))
    }, rand),
    async check(root, h, cut) {
      const v: CutVerdict = { lost: 0, lostAllowed: 0, checked: 0, problems: [] }
      const j = await Journal.open(join(root, 'stream'), h.opts)
      try {
        const last = j.lastSeq
        for (let seq = j.firstSeq; seq <= last; seq++) {
          const got = j.read(seq)
          if (got === null) continue
          const want = h.appended.get(seq)
          if (want === undefined || got.subject !== want.subject || !got.payload.equals(want.payload)) {
            v.problems.push(`seq ${seq} is served with bytes never appended under that sequence`)
          }
        }
        let maxRequired = 0
        let newest = last
        for (const [seq, at] of h.acked) if (at <= cut.k) newest = Math.max(newest, seq)
        for (const [seq, at] of h.acked) {
          if (at > cut.k) continue
          const promised = policy !== 'none' || at <= cut.lastWriteback
          // retention keeps the newest maxMsgs (of those stored before the cut, or found after it):
          // an acknowledged record among them must be served
          const kept = seq > newest - h.maxMsgs
          const want = h.appended.get(seq)!
          const got = seq <= last ? j.read(seq) : null
          const present = got !== null && got.payload.equals(want.payload)
          if (promised) maxRequired = Math.max(maxRequired, seq)
          if (!kept) continue
          v.checked++
          if (present) continue
          if (promised) {
            v.lost++
            if (v.problems.length < 3) v.problems.push(`acknowledged seq ${seq} lost (journal now ${j.firstSeq}..${last})`)
          } else v.lostAllowed++
        }
        // the next message must not take the sequence of one acknowledged before the cut
        const next = await j.append({ subject: 'after/cut', payload: Buffer.from('x') })
        if (next.seq <= maxRequired) v.problems.push(`after the cut a new message got seq ${next.seq}, used by an acknowledged one (<= ${maxRequired})`)
      } finally {
        await j.close()
      }
      return v
    },
  }
}

/**
 * A last-value stream (maxMsgsPerSubject 1): superseded records make sealed segments worth
 * compacting, so segment files are rewritten and renamed over the old ones while appends go on.
 * After a cut, each subject must serve its newest acknowledged message, or a newer one.
 */
export function lastValueScenario(rounds: number): Scenario<JournalHistory> {
  const opts: JournalOptions = { fsync: 'batch', segmentBytes: 2048, indexIntervalBytes: 256, limits: { maxMsgsPerSubject: 1 } }
  return {
    store: 'stream-lastvalue',
    policy: 'batch',
    logFile: null,
    run: (root, rec, rand) => journalWorkload(root, rec, opts, 0, rounds, () =>
      Array.from({ length: 1 + Math.floor(rand() * 4) }, () => ({ subject: `devices/${Math.floor(rand() * 6)}/state`, payload: randomPayload(rand, 8, 200) })), rand),
    async check(root, h, cut) {
      const v: CutVerdict = { lost: 0, lostAllowed: 0, checked: 0, problems: [] }
      const j = await Journal.open(join(root, 'stream'), h.opts)
      try {
        const served = new Map<string, { seq: number; payload: Buffer }>()
        for (const r of j.iterate()) {
          const want = h.appended.get(r.seq)
          if (want === undefined || want.subject !== r.subject || !want.payload.equals(r.payload)) v.problems.push(`seq ${r.seq} is served with bytes never appended under that sequence`)
          if (served.has(r.subject)) v.problems.push(`subject ${r.subject} serves two records (maxMsgsPerSubject 1)`)
          served.set(r.subject, { seq: r.seq, payload: Buffer.from(r.payload) })
        }
        const newest = new Map<string, number>()
        for (const [seq, at] of h.acked) {
          const subject = h.appended.get(seq)!.subject
          if (at <= cut.k && seq > (newest.get(subject) ?? 0)) newest.set(subject, seq)
        }
        for (const [subject, seq] of newest) {
          v.checked++
          const got = served.get(subject)
          if (got !== undefined && got.seq >= seq) continue
          v.lost++
          if (v.problems.length < 3) v.problems.push(`${subject}: acknowledged seq ${seq} lost (serving ${got?.seq ?? 'nothing'})`)
        }
      } finally {
        await j.close()
      }
      return v
    },
  }
}

// --- retained messages, session queues, incoming QoS 2: the MQTT state log --------------------

interface Change {
  /** null: absent (cleared, delivered, released). */
  value: Buffer | null
  issuedAt: number
  /** CrashFs.now() when the store's promise resolved, or -1. */
  ackedAt: number
}

interface PersistenceHistory {
  /** Per key (retained topic, queued message, incoming packet, subscription, will), its changes in order. */
  keys: Map<string, Change[]>
  opts: Parameters<typeof FilePersistence.open>[1]
}

const CLIENTS = ['c1', 'c2', 'c3']

async function collect<T>(r: Readable): Promise<T[]> {
  const out: T[] = []
  for await (const x of r) out.push(x as T)
  return out
}

export function persistenceScenario(ops: number): Scenario<PersistenceHistory> {
  const opts = { syncIntervalMs: 1, compactMinBytes: 3000, compactRatio: 1.5, retryMs: 5 }
  return {
    store: 'mqtt-state',
    policy: 'sync 1 ms',
    logFile: /[/\\]mqtt[/\\]state-\d{8,}\.log$/,
    async run(root, rec, rand) {
      const h: PersistenceHistory = { keys: new Map(), opts }
      const p = await FilePersistence.open(join(root, 'mqtt'), opts)
      let counter = 0
      const queued: Array<{ client: string; counter: number }> = []
      const incoming: Array<{ client: string; mid: number }> = []
      const waits: Promise<unknown>[] = []
      const change = (key: string, value: Buffer | null, promise: Promise<unknown>): void => {
        const c: Change = { value, issuedAt: rec.now(), ackedAt: -1 }
        let list = h.keys.get(key)
        if (list === undefined) h.keys.set(key, (list = []))
        list.push(c)
        waits.push(promise.then(() => { c.ackedAt = rec.now() }))
      }
      for (let i = 0; i < ops; i++) {
        const r = rand()
        const client = CLIENTS[Math.floor(rand() * CLIENTS.length)]!
        if (r < 0.35) {
          const topic = `r/${Math.floor(rand() * 12)}`
          const clear = rand() < 0.15
          const payload = clear ? Buffer.alloc(0) : randomPayload(rand, 1, 300)
          change(`retained ${topic}`, clear ? null : payload, p.storeRetained({ cmd: 'publish', topic, payload, qos: 1, retain: true }))
        } else if (r < 0.6) {
          const payload = randomPayload(rand, 1, 200)
          counter++
          queued.push({ client, counter })
          change(`queued ${client}#${counter}`, payload,
            p.outgoingEnqueue({ clientId: client, qos: 1 }, { cmd: 'publish', topic: 'q/t', payload, qos: 1, retain: false, brokerId: 'b1', brokerCounter: counter }))
        } else if (r < 0.72 && queued.length > 0) {
          const [q] = queued.splice(Math.floor(rand() * queued.length), 1)
          change(`queued ${q!.client}#${q!.counter}`, null, p.outgoingClearMessageId({ id: q!.client }, { brokerId: 'b1', brokerCounter: q!.counter }))
        } else if (r < 0.82) {
          const mid = 1 + Math.floor(rand() * 20)
          if (incoming.some((x) => x.client === client && x.mid === mid)) continue
          const payload = randomPayload(rand, 1, 200)
          incoming.push({ client, mid })
          change(`incoming ${client}#${mid}`, payload, p.incomingStorePacket({ id: client }, { cmd: 'publish', topic: 'in/t', payload, qos: 2, messageId: mid }))
        } else if (r < 0.88 && incoming.length > 0) {
          const [x] = incoming.splice(Math.floor(rand() * incoming.length), 1)
          change(`incoming ${x!.client}#${x!.mid}`, null, p.incomingDelPacket({ id: x!.client }, { messageId: x!.mid }))
        } else if (r < 0.95) {
          const topic = `s/${Math.floor(rand() * 4)}`
          const qos = 1 + Math.floor(rand() * 2)
          if (rand() < 0.7) change(`sub ${client} ${topic}`, Buffer.from(String(qos)), p.addSubscriptions({ id: client }, [{ topic, qos }]))
          else change(`sub ${client} ${topic}`, null, p.removeSubscriptions({ id: client }, [topic]))
        } else {
          const payload = randomPayload(rand, 1, 100)
          if (rand() < 0.7) change(`will ${client}`, payload, p.putWill({ id: client }, { cmd: 'publish', topic: 'w/t', payload, qos: 1, retain: false }))
          else change(`will ${client}`, null, p.delWill({ id: client }))
        }
        const t = rand()
        if (t < 0.3) await nextTurn()
        else if (t < 0.4) await sleep(2) // let the 1 ms sync timer fire
      }
      await Promise.all(waits)
      await p.close()
      return h
    },
    async check(root, h, cut) {
      const p = await FilePersistence.open(join(root, 'mqtt'), h.opts)
      try {
        const actual = new Map<string, Buffer>()
        for (const pkt of await collect<StoredPacket>(p.createRetainedStream('#'))) actual.set(`retained ${pkt.topic as string}`, pkt.payload as Buffer)
        for (const client of CLIENTS) {
          for (const pkt of await collect<StoredPacket>(p.outgoingStream({ id: client }))) actual.set(`queued ${client}#${pkt.brokerCounter as number}`, pkt.payload as Buffer)
          for (let mid = 1; mid <= 20; mid++) {
            const pkt = await p.incomingGetPacket({ id: client }, { messageId: mid }).catch(() => null)
            if (pkt !== null) actual.set(`incoming ${client}#${mid}`, pkt.payload as Buffer)
          }
          for (const sub of await p.subscriptionsByClient({ id: client })) actual.set(`sub ${client} ${sub.topic}`, Buffer.from(String(sub.qos)))
          const will = await p.getWill({ id: client })
          if (will !== undefined) actual.set(`will ${client}`, will.payload as Buffer)
        }
        return checkRegisters(h.keys, actual, cut)
      } finally {
        await p.close()
      }
    },
  }
}

/**
 * Each key is a register written by a sequence of changes. After a cut it must hold the value of
 * the last change the README promised (acknowledged, then a sync of the log returned), or of a
 * change after it (those may have reached the disk too); before any promised change, also nothing.
 */
function checkRegisters(keys: Map<string, Change[]>, actual: Map<string, Buffer>, cut: CutContext): CutVerdict {
  const v: CutVerdict = { lost: 0, lostAllowed: 0, checked: 0, problems: [] }
  for (const [key, changes] of keys) {
    const got = actual.get(key) ?? null
    let promised = -1
    let acked = -1
    for (let i = 0; i < changes.length; i++) {
      const c = changes[i]!
      if (c.ackedAt < 0 || c.ackedAt > cut.k) continue
      acked = i
      if (c.ackedAt <= cut.lastLogSync) promised = i
    }
    const same = (c: Change): boolean => (c.value === null ? got === null : got !== null && got.equals(c.value))
    let allowed = promised < 0 && got === null
    for (let i = Math.max(promised, 0); i < changes.length && !allowed; i++) if (changes[i]!.issuedAt <= cut.k && same(changes[i]!)) allowed = true
    if (acked >= 0) v.checked++
    if (!allowed) {
      const older = changes.slice(0, Math.max(promised, 0)).some(same) || got === null
      if (older) {
        v.lost++
        if (v.problems.length < 3) v.problems.push(`${key}: the change acknowledged and synced before the cut is lost (${got === null ? 'absent' : 'an older value'})`)
      } else v.problems.push(`${key}: holds bytes never written to it`)
    } else if (acked > promised && !same(changes[acked]!)) {
      v.lostAllowed++ // acknowledged within the last sync interval and lost: what the README allows
    }
  }
  return v
}

// --- consumer state ---------------------------------------------------------------------------

interface ConsumerHistory {
  messages: number
  /** seq -> CrashFs.now() when ack() returned true. */
  acked: Map<number, number>
  /** seq -> CrashFs.now() when the write holding its ack returned (the end of that event-loop turn). */
  ackWritten: Map<number, number>
}

const CONSUMER_DEF = { name: 'work', ackWait: '1h', maxDeliver: 0, maxAckPending: 0 }
const CONSUMER_STATE = { syncIntervalMs: 1, compactMinBytes: 1024, compactRatio: 2 }

export function consumerScenario(messages: number): Scenario<ConsumerHistory> {
  const def = parseConsumerDefinition(CONSUMER_DEF, 'pl')
  return {
    store: 'consumer-state',
    policy: 'sync 1 ms',
    logFile: /[/\\]consumers[/\\]work\.state$/,
    async prepare(root) {
      // the stream, written and synced before the cut points: they are about the consumer's state
      const j = await Journal.open(join(root, 'stream'), { fsync: 'batch' })
      for (let i = 0; i < messages; i++) void j.appendQueued({ subject: `jobs/${i % 7}`, payload: Buffer.from(`job ${i}`) })
      await j.close()
    },
    async run(root, rec, rand) {
      const h: ConsumerHistory = { messages, acked: new Map(), ackWritten: new Map() }
      let unwritten: number[] = []
      const onWrite = (): void => {
        for (const seq of unwritten) h.ackWritten.set(seq, rec.now())
        unwritten = []
      }
      const j = await Journal.open(join(root, 'stream'), { fsync: 'batch' })
      const c = await Consumer.open(j, def, { state: { ...CONSUMER_STATE, onWrite } })
      for (let round = 0; round < messages * 3 && h.acked.size < messages; round++) {
        for (const d of c.next(1 + Math.floor(rand() * 8), rand() < 0.5 ? 'w1' : 'w2')) {
          const r = rand()
          if (r < 0.6) {
            if (c.ack(d.seq)) {
              h.acked.set(d.seq, rec.now())
              unwritten.push(d.seq)
            }
          } else if (r < 0.8) c.nak(d.seq)
        }
        // the unacknowledged rest is given back (as a client disconnecting does)
        if (rand() < 0.3) { c.release('w1'); c.release('w2') }
        const t = rand()
        if (t < 0.5) await nextTurn()
        else if (t < 0.7) await sleep(2)
      }
      await c.close()
      await j.close()
      return h
    },
    async check(root, h, cut) {
      const v: CutVerdict = { lost: 0, lostAllowed: 0, checked: 0, problems: [] }
      const j = await Journal.open(join(root, 'stream'), { fsync: 'batch' })
      try {
        const c = await Consumer.open(j, def, { state: CONSUMER_STATE })
        try {
          const info = c.info()
          const pending = new Set(c.pendingEntries().map((e) => e.seq))
          const done = (seq: number): boolean => seq <= info.deliveredSeq && !pending.has(seq)
          for (let seq = 1; seq <= h.messages; seq++) {
            const at = h.acked.get(seq)
            const acked = at !== undefined && at <= cut.k
            if (!acked) {
              // never acknowledged: it must still be delivered (else it is lost for this consumer)
              if (done(seq)) {
                v.lost++
                if (v.problems.length < 3) v.problems.push(`seq ${seq} was never acknowledged but the consumer counts it done: it will never be delivered`)
              }
              continue
            }
            v.checked++
            if (done(seq)) continue
            // promised once a sync that started after the write of its record returned
            const written = h.ackWritten.get(seq)
            if (written !== undefined && written <= cut.lastLogSync) {
              v.lost++
              if (v.problems.length < 3) v.problems.push(`the ack of seq ${seq}, synced before the cut, is lost (it would be redelivered)`)
            } else v.lostAllowed++ // an ack of the last sync interval: redelivered, as the README allows
          }
        } finally {
          await c.close()
        }
      } finally {
        await j.close()
      }
      return v
    },
  }
}

