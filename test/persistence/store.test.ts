import { EventEmitter } from 'node:events'
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import fc from 'fast-check'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { topicMatchesFilter } from '../../src/subjects/topic.ts'
import { FilePersistence, type FilePersistenceOptions } from '../../src/persistence/file-persistence.ts'
import { RetainedIndex } from '../../src/persistence/retained.ts'
import type { StoredPacket } from '../../src/persistence/records.ts'

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'edgebus-store-'))
  dirs.push(d)
  return d
}

async function list<T>(stream: Readable): Promise<T[]> {
  const out: T[] = []
  for await (const x of stream) out.push(x as T)
  return out
}

/** A stand-in for aedes: an id, the connected clients, and its events. */
class FakeBroker extends EventEmitter {
  id = 'broker-1'
  counter = 0
  clients: Record<string, unknown> = {}
}

async function open(dir: string, opts: FilePersistenceOptions = {}): Promise<{ p: FilePersistence; broker: FakeBroker }> {
  const p = await FilePersistence.open(dir, { syncIntervalMs: 10, ...opts })
  const broker = new FakeBroker()
  await p.setup(broker)
  return { p, broker }
}

function pub(topic: string, payload: string, qos: number, counter: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false, brokerId: 'broker-1', brokerCounter: counter, ...extra }
}

const stateFile = (dir: string): string => join(dir, readdirSync(dir).find((n) => n.endsWith('.log')) as string)

describe('RetainedIndex', () => {
  const level = fc.constantFrom('a', 'b', '', '$x', 'deep')
  const topic = fc.array(level, { minLength: 1, maxLength: 5 }).map((l) => l.join('/')).filter((t) => t.length > 0)
  const filter = fc.array(fc.constantFrom('a', 'b', '', '$x', '+', '#'), { minLength: 1, maxLength: 5 }).map((parts) => {
    const i = parts.indexOf('#')
    return (i === -1 ? parts : parts.slice(0, i + 1)).join('/')
  }).filter((f) => f.length > 0)

  it('finds exactly the topics the reference matcher finds, each once', () => {
    fc.assert(fc.property(fc.array(topic, { maxLength: 40 }), fc.array(topic, { maxLength: 10 }), fc.array(filter, { minLength: 1, maxLength: 3 }), (topics, removed, filters) => {
      const idx = new RetainedIndex()
      for (const t of topics) idx.set({ topic: t, packet: { topic: t }, bytes: 1 })
      for (const t of removed) idx.delete(t)
      const live = [...new Set(topics)].filter((t) => !removed.includes(t))
      expect(idx.size).toBe(live.length)
      const expected = live.filter((t) => filters.some((f) => topicMatchesFilter(t, f))).sort()
      const got = idx.match(filters).map((p) => p.topic as string)
      expect([...got].sort()).toEqual(expected)
    }), { numRuns: 1500 })
  })
})

describe('FilePersistence on disk', () => {
  it('replays retained messages, sessions, queues, incoming QoS 2 and wills after a reopen', async () => {
    const dir = tempDir()
    let { p } = await open(dir)
    await p.storeRetained({ cmd: 'publish', topic: 'r/1', payload: Buffer.from('one'), qos: 1, retain: true, properties: { contentType: 'text/plain' } })
    await p.storeRetained({ cmd: 'publish', topic: 'r/2', payload: Buffer.from('two'), qos: 0, retain: true })
    await p.storeRetained({ cmd: 'publish', topic: 'r/2', payload: Buffer.alloc(0), qos: 0, retain: true })
    await p.addSubscriptions({ id: 'c1' }, [{ topic: 'q/#', qos: 1, rh: 0, rap: false, nl: false, subscriptionIdentifier: 9 }, { topic: 'z', qos: 0 }])
    await p.outgoingEnqueueCombi(await p.subscriptionsByTopic('q/a'), pub('q/a', 'm1', 1, 1))
    await p.outgoingEnqueueCombi(await p.subscriptionsByTopic('q/b'), pub('q/b', 'm2', 2, 2))
    await p.outgoingEnqueueCombi(await p.subscriptionsByTopic('q/c'), pub('q/c', 'm3', 1, 3))
    await p.outgoingUpdate({ id: 'c1' }, pub('q/a', 'm1', 1, 1, { messageId: 11 }))
    await p.outgoingClearMessageId({ id: 'c1' }, { messageId: 11 })
    await p.outgoingUpdate({ id: 'c1' }, pub('q/b', 'm2', 1, 2, { messageId: 12 }))
    await p.outgoingUpdate({ id: 'c1' }, { cmd: 'pubrel', messageId: 12 })
    await p.incomingStorePacket({ id: 'pub' }, { cmd: 'publish', topic: 'in', payload: Buffer.from('i'), qos: 2, messageId: 77 })
    await p.putWill({ id: 'c1' }, { topic: 'will/c1', payload: Buffer.from('bye'), qos: 1, retain: false })
    await p.close()

    ;({ p } = await open(dir))
    const retained = await list<StoredPacket>(p.createRetainedStream('#'))
    expect(retained.map((x) => [x.topic, String(x.payload)])).toEqual([['r/1', 'one']])
    expect(retained[0]?.properties).toEqual({ contentType: 'text/plain' })
    expect(await p.subscriptionsByClient({ id: 'c1' })).toEqual([
      { topic: 'q/#', qos: 1, rh: 0, rap: false, nl: false, subscriptionIdentifier: 9 }, { topic: 'z', qos: 0 }])
    const queued = await list<StoredPacket>(p.outgoingStream({ id: 'c1' }))
    // m2 was published at QoS 2 to a QoS 1 subscription: queued at QoS 1; its PUBREL replaced it
    expect(queued).toEqual([{ cmd: 'pubrel', messageId: 12 }, expect.objectContaining({ topic: 'q/c', qos: 1, messageId: undefined })])
    expect(String((await p.incomingGetPacket({ id: 'pub' }, { messageId: 77 })).payload)).toBe('i')
    expect(await p.getWill({ id: 'c1' })).toMatchObject({ topic: 'will/c1', clientId: 'c1', brokerId: 'broker-1' })
    expect(p.stats).toMatchObject({ retained: 1, queued: 2, subscriptions: 1 })
    await p.close()
  })

  it('cuts a torn tail back and starts', async () => {
    const dir = tempDir()
    let { p } = await open(dir)
    for (let i = 0; i < 50; i++) await p.storeRetained({ topic: `t/${i}`, payload: Buffer.from(`v${i}`), qos: 0, retain: true })
    await p.close()
    const file = stateFile(dir)
    const whole = statSync(file).size
    const bytes = readFileSync(file)
    appendFileSync(file, bytes.subarray(bytes.length - 30, bytes.length - 7)) // half a record
    ;({ p } = await open(dir))
    expect(p.loaded.tornBytes).toBe(23)
    expect(p.loaded.corrupt).toEqual([])
    expect(statSync(file).size).toBe(whole)
    expect(p.stats.retained).toBe(50)
    await p.storeRetained({ topic: 'after', payload: Buffer.from('x'), qos: 0, retain: true })
    await p.close()
    ;({ p } = await open(dir))
    expect(p.stats.retained).toBe(51)
    await p.close()
  })

  it('skips a damaged record, keeps the records after it, and rewrites the file', async () => {
    const dir = tempDir()
    let { p } = await open(dir)
    for (let i = 0; i < 20; i++) await p.storeRetained({ topic: `t/${i}`, payload: Buffer.from(`value-${i}`), qos: 0, retain: true })
    await p.close()
    const file = stateFile(dir)
    const bytes = readFileSync(file)
    const at = bytes.indexOf('value-7')
    bytes.writeUInt8(bytes.readUInt8(at + 2) ^ 0xff, at + 2)
    writeFileSync(file, bytes)
    ;({ p } = await open(dir))
    expect(p.loaded.corrupt).toHaveLength(1)
    const topics = (await list<StoredPacket>(p.createRetainedStream('t/+'))).map((x) => x.topic).sort()
    expect(topics).toEqual(Array.from({ length: 20 }, (_, i) => `t/${i}`).filter((t) => t !== 't/7').sort())
    await p.close() // waits for the compaction the damage started
    expect(readdirSync(dir).filter((n) => n.endsWith('.log'))).toEqual(['state-00000002.log'])
    ;({ p } = await open(dir))
    expect(p.loaded.corrupt).toEqual([])
    expect(p.stats.retained).toBe(19)
    await p.close()
  })

  it('compacts: the file stays bounded under a churn of retained updates and queue traffic', async () => {
    const dir = tempDir()
    let { p } = await open(dir, { compactMinBytes: 64 * 1024 })
    await p.addSubscriptions({ id: 'sub' }, [{ topic: 'q/#', qos: 1 }])
    const payload = 'x'.repeat(100)
    let maxFile = 0
    for (let round = 0; round < 200; round++) {
      const batch: Array<Promise<unknown>> = []
      for (let i = 0; i < 50; i++) batch.push(p.storeRetained({ topic: `r/${i}`, payload: Buffer.from(`${round}:${payload}`), qos: 0, retain: true }))
      const counter = round + 1
      batch.push(p.outgoingEnqueueCombi([{ clientId: 'sub', qos: 1 }], pub('q/x', payload, 1, counter)))
      await Promise.all(batch)
      await p.outgoingUpdate({ id: 'sub' }, pub('q/x', payload, 1, counter, { messageId: counter }))
      await p.outgoingClearMessageId({ id: 'sub' }, { messageId: counter })
      await p.settled()
      maxFile = Math.max(maxFile, p.stats.fileBytes)
    }
    const { compactions, appendedBytes, liveBytes } = p.stats
    expect(appendedBytes).toBeGreaterThan(1_300_000)
    expect(compactions).toBeGreaterThan(10)
    // the rule: a rewrite (live data) plus growth of max(64 KiB, live), plus one round's appends
    expect(liveBytes).toBeLessThan(10_000)
    expect(maxFile).toBeLessThan(liveBytes + 64 * 1024 + 2 * 8 * 1024)
    await p.close()
    ;({ p } = await open(dir))
    const retained = await list<StoredPacket>(p.createRetainedStream('r/#'))
    expect(retained).toHaveLength(50)
    expect(retained.every((x) => String(x.payload).startsWith('199:'))).toBe(true)
    expect(p.stats.queued).toBe(0)
    await p.close()
  })

  it('refuses changes it cannot write (the caller does not acknowledge them), takes them back, and resumes once writes work', async () => {
    const dir = tempDir()
    let failing = false
    const logged: string[] = []
    const log = { info: (_o: object, m: string) => logged.push(m), warn: (_o: object, m: string) => logged.push(m), error: (o: object, m: string) => logged.push(`${(o as { code: string }).code} ${m}`) }
    let { p } = await open(dir, {
      log, retryMs: 20,
      fileOps: {
        writeSync: (fd, buf, off, len, pos) => {
          if (failing) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
          return writeSync(fd, buf, off, len, pos)
        },
      },
    })
    await p.storeRetained({ topic: 'before', payload: Buffer.from('1'), qos: 0, retain: true })
    await p.addSubscriptions({ id: 'c', clean: false }, [{ topic: 'q/#', qos: 1 }])
    await p.outgoingEnqueueCombi([{ clientId: 'c', qos: 1 }], { cmd: 'publish', topic: 'q/0', payload: Buffer.from('x'), qos: 1, retain: false, brokerId: 'b', brokerCounter: 1 })
    failing = true
    // progress (a delivery acknowledged) is not refused: at worst it is delivered again after a restart
    await expect(p.outgoingClearMessageId({ id: 'c' }, { brokerId: 'b', brokerCounter: 1 })).resolves.toMatchObject({ topic: 'q/0' })
    await expect(p.storeRetained({ topic: 'during', payload: Buffer.from('2'), qos: 0, retain: true })).rejects.toMatchObject({ code: 'EPERSIST_FULL' })
    await expect(p.storeRetained({ topic: 'before', payload: Buffer.from('changed'), qos: 0, retain: true })).rejects.toMatchObject({ code: 'EPERSIST_FULL' })
    await expect(p.outgoingEnqueueCombi([{ clientId: 'c', qos: 1 }], { cmd: 'publish', topic: 'q/1', payload: Buffer.from('x'), qos: 1, retain: false })).rejects.toMatchObject({ code: 'EPERSIST_FULL' })
    await expect(p.incomingStorePacket({ id: 'c' }, { cmd: 'publish', topic: 'q/2', payload: Buffer.from('y'), qos: 2, messageId: 7, retain: false })).rejects.toMatchObject({ code: 'EPERSIST_FULL' })
    // what was refused is not served either: memory says what the file says
    expect((await list<StoredPacket>(p.createRetainedStream('#'))).map((x) => [x.topic, String(x.payload)])).toEqual([['before', '1']])
    expect(p.stats.queued).toBe(0)
    await expect(p.incomingGetPacket({ id: 'c' }, { messageId: 7 })).rejects.toThrow()
    expect(p.failure?.code).toBe('EPERSIST_FULL')
    expect(p.stats.writable).toBe(false)
    expect(logged.filter((m) => m.startsWith('EPERSIST_FULL'))).toHaveLength(1) // once per episode
    failing = false
    // the same message again (the client's resend) is written, not taken for the one in memory
    await p.storeRetained({ topic: 'during', payload: Buffer.from('2'), qos: 0, retain: true })
    await vi.waitFor(() => expect(p.stats.writable).toBe(true), { timeout: 3000 })
    expect(p.failure).toBeNull()
    await p.close()
    ;({ p } = await open(dir))
    expect((await list<StoredPacket>(p.createRetainedStream('#'))).map((x) => [x.topic, String(x.payload)]).sort()).toEqual([['before', '1'], ['during', '2']])
    await p.close()
  })

  it('closed while it cannot write: says so, tries one last rewrite, and a restart has every acknowledged change', async () => {
    const dir = tempDir()
    let failing = false
    const warned: string[] = []
    const log = { info() {}, warn: (_o: object, m: string) => warned.push(m), error() {} }
    let { p } = await open(dir, {
      log, retryMs: 60_000,
      fileOps: {
        writeSync: (fd, buf, off, len, pos) => {
          if (failing) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
          return writeSync(fd, buf, off, len, pos)
        },
      },
    })
    await p.storeRetained({ topic: 'acked', payload: Buffer.from('1'), qos: 0, retain: true })
    failing = true
    await expect(p.storeRetained({ topic: 'refused', payload: Buffer.from('2'), qos: 0, retain: true })).rejects.toMatchObject({ code: 'EPERSIST_FULL' })
    await p.close()
    expect(warned.some((m) => m.startsWith('MQTT state closed while it cannot be written'))).toBe(true)
    failing = false
    ;({ p } = await open(dir))
    expect((await list<StoredPacket>(p.createRetainedStream('#'))).map((x) => x.topic)).toEqual(['acked'])
    await p.close()
  })

  it('a write cut short by a full disk leaves no record of the refused batch in the file', async () => {
    const dir = tempDir()
    let room = Infinity
    let { p } = await open(dir, {
      retryMs: 60_000,
      fileOps: {
        // a short write, as a disk that fills up in the middle of a batch gives, then ENOSPC
        writeSync: (fd, buf, off, len, pos) => {
          if (room <= 0) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
          const n = writeSync(fd, buf, off, Math.min(len, room), pos)
          room -= n
          return n
        },
      },
    })
    await p.storeRetained({ topic: 'kept', payload: Buffer.from('1'), qos: 0, retain: true })
    room = 200 // the first records of the next batch fit, the rest does not
    const refused = [1, 2, 3, 4, 5].map((i) => p.storeRetained({ topic: `refused/${i}`, payload: Buffer.alloc(60, i), qos: 0, retain: true }))
    for (const r of refused) await expect(r).rejects.toMatchObject({ code: 'EPERSIST_FULL' })
    room = Infinity
    await p.storeRetained({ topic: 'after', payload: Buffer.from('2'), qos: 0, retain: true })
    await p.close()
    ;({ p } = await open(dir))
    expect((await list<StoredPacket>(p.createRetainedStream('#'))).map((x) => x.topic).sort()).toEqual(['after', 'kept'])
    await p.close()
  })

  it('writes nothing for a retained message that repeats the stored one', async () => {
    const { p } = await open(tempDir())
    await p.storeRetained({ topic: 'sensor/t', payload: Buffer.from('21.5'), qos: 0, retain: true })
    const after = p.stats.appendedBytes
    await p.storeRetained({ topic: 'sensor/t', payload: Buffer.from('21.5'), qos: 0, retain: true })
    expect(p.stats.appendedBytes).toBe(after)
    await p.storeRetained({ topic: 'sensor/t', payload: Buffer.from('21.6'), qos: 0, retain: true })
    await p.storeRetained({ topic: 'sensor/t', payload: Buffer.from('21.6'), qos: 1, retain: true })
    expect(p.stats.appendedBytes).toBeGreaterThan(after)
    expect((await list<StoredPacket>(p.createRetainedStream('sensor/t'))).map((x) => [String(x.payload), x.qos])).toEqual([['21.6', 1]])
    await p.close()
  })

  it('sets an unreadable state file aside and starts empty', async () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'state-00000003.log')) // reading it fails (EISDIR), as a bad sector would
    const { p } = await open(dir)
    expect(p.stats.retained).toBe(0)
    await p.storeRetained({ topic: 'a', payload: Buffer.from('1'), qos: 0, retain: true })
    await p.close()
    expect(readdirSync(dir).sort()).toEqual(['state-00000003.log.damaged', 'state-00000004.log'])
  })

  it('refuses a second opener of the same directory', async () => {
    const dir = tempDir()
    const { p } = await open(dir)
    await expect(FilePersistence.open(dir)).rejects.toMatchObject({ code: 'EPERSIST_LOCKED' })
    await p.close()
    const again = await FilePersistence.open(dir)
    await again.close()
  })

  it('takes over a lock whose process is gone or from an earlier boot, not one of a live process', async () => {
    const dir = tempDir()
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    writeFileSync(join(dir, 'LOCK'), `${process.ppid} ${bootId}\n`) // alive (our parent), this boot
    await expect(FilePersistence.open(dir)).rejects.toMatchObject({ code: 'EPERSIST_LOCKED' })
    writeFileSync(join(dir, 'LOCK'), `${process.ppid} 00000000-0000-0000-0000-000000000000\n`) // before a reboot
    const p = await FilePersistence.open(dir)
    await p.close()
    writeFileSync(join(dir, 'LOCK'), '2147483646\n') // no such process
    const q = await FilePersistence.open(dir)
    await q.close()
  })
})

describe('bounds of offline sessions', () => {
  it('drops the oldest QoS 0/1 message over maxQueuedMessages, and counts it', async () => {
    const { p } = await open(tempDir(), { maxQueuedMessages: 5 })
    await p.addSubscriptions({ id: 'off' }, [{ topic: 'q/#', qos: 2 }])
    for (let i = 1; i <= 8; i++) await p.outgoingEnqueueCombi(await p.subscriptionsByTopic('q/1'), pub('q/1', `m${i}`, 1, i))
    expect(p.stats).toMatchObject({ queued: 5, queueDropped: 3 })
    expect((await list<StoredPacket>(p.outgoingStream({ id: 'off' }))).map((x) => String(x.payload))).toEqual(['m4', 'm5', 'm6', 'm7', 'm8'])
    // QoS 2 messages are not dropped for newer ones: a queue full of them refuses the newest
    for (let i = 9; i <= 14; i++) await p.outgoingEnqueueCombi(await p.subscriptionsByTopic('q/1'), pub('q/1', `m${i}`, 2, i))
    expect((await list<StoredPacket>(p.outgoingStream({ id: 'off' }))).map((x) => String(x.payload))).toEqual(['m9', 'm10', 'm11', 'm12', 'm13'])
    expect(p.stats.queueDropped).toBe(9)
    await p.close()
  })

  it('does not bound the queue of a connected client (it holds messages in flight)', async () => {
    const { p, broker } = await open(tempDir(), { maxQueuedMessages: 2 })
    broker.clients.on = {}
    for (let i = 1; i <= 4; i++) await p.outgoingEnqueueCombi([{ clientId: 'on', qos: 1 }], pub('t', `m${i}`, 1, i))
    expect(p.stats).toMatchObject({ queued: 4, queueDropped: 0 })
    await p.close()
  })
})

describe('session expiry', () => {
  it('discards a disconnected session after its expiry, and keeps a connected one', async () => {
    const { p, broker } = await open(tempDir(), { sessionExpiryMs: 60 })
    for (const id of ['gone', 'stays']) {
      await p.addSubscriptions({ id }, [{ topic: 'a', qos: 1 }])
      broker.emit('client', { id, clean: false, version: 4 })
    }
    await p.outgoingEnqueueCombi(await p.subscriptionsByTopic('a'), pub('a', 'x', 1, 1))
    broker.emit('clientDisconnect', { id: 'gone', clean: false, version: 4 })
    broker.clients.stays = {}
    await vi.waitFor(async () => expect(await p.subscriptionsByClient({ id: 'gone' })).toEqual([]))
    expect(await list(p.outgoingStream({ id: 'gone' }))).toEqual([])
    expect(await p.subscriptionsByClient({ id: 'stays' })).toHaveLength(1)
    expect(p.stats.sessionsExpired).toBe(1)
    await p.close()
  })

  it('counts the expiry of sessions that were connected when the server stopped from the restart, and expires overdue ones at start', async () => {
    const dir = tempDir()
    let now = 1_000_000
    const clock = (): number => now
    let { p, broker } = await open(dir, { clock, sessionExpiryMs: 10_000 })
    await p.addSubscriptions({ id: 'v3' }, [{ topic: 'a', qos: 1 }])
    broker.emit('client', { id: 'v3', clean: false, version: 4 })
    await p.addSubscriptions({ id: 'v5' }, [{ topic: 'a', qos: 1 }])
    broker.emit('client', { id: 'v5', clean: false, version: 5, sessionExpiryInterval: 2 })
    await p.close() // a crash would leave the same: both sessions connected
    now += 60_000
    ;({ p, broker } = await open(dir, { clock, sessionExpiryMs: 10_000 }))
    expect(p.stats.sessions).toBe(2) // the clock starts now
    await p.close()
    now += 5_000
    ;({ p, broker } = await open(dir, { clock, sessionExpiryMs: 10_000 }))
    expect(p.stats).toMatchObject({ sessions: 1, sessionsExpired: 1 }) // v5's 2 s are over, v3's 10 s are not
    expect(await p.subscriptionsByClient({ id: 'v5' })).toEqual([])
    await p.close()
    now += 5_001
    ;({ p } = await open(dir, { clock, sessionExpiryMs: 10_000 }))
    expect(p.stats).toMatchObject({ sessions: 0, sessionsExpired: 1 })
    await p.close()
  })

  it('drops what a clean session left when it disconnects', async () => {
    const { p, broker } = await open(tempDir())
    await p.incomingStorePacket({ id: 'c' }, { cmd: 'publish', topic: 'x', payload: Buffer.from('p'), qos: 2, messageId: 3 })
    broker.emit('clientDisconnect', { id: 'c', clean: true, version: 4 })
    await expect(p.incomingGetPacket({ id: 'c' }, { messageId: 3 })).rejects.toThrow('no such packet')
    await p.close()
  })
})
