import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { afterAll, describe, expect, it } from 'vitest'
import { FilePersistence } from '../../src/persistence/file-persistence.ts'
import { STATE_FILE_HEADER } from '../../src/persistence/records.ts'

/**
 * Issue 15, item 2: which state generation is read is decided by what the files hold, not by
 * their names. A stray newer file (empty, a header alone, zeros) beside an intact older one must
 * not cost the retained messages and queued sessions the older one holds.
 */

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'edgebus-gen-'))
  dirs.push(d)
  return d
}

async function count(stream: Readable): Promise<number> {
  let n = 0
  for await (const _ of stream) n++
  return n
}

interface Line { level: string; obj: Record<string, unknown>; msg: string }
function recordingLog(): { lines: Line[]; info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void } {
  const lines: Line[] = []
  const at = (level: string) => (obj: object, msg: string): void => { lines.push({ level, obj: obj as Record<string, unknown>, msg }) }
  return { lines, info: at('info'), warn: at('warn'), error: at('error') }
}

/** A state directory holding 100 retained messages and 20 messages queued for an offline session, in generation 1. */
async function stateWithData(): Promise<string> {
  const dir = tempDir()
  const p = await FilePersistence.open(dir)
  await p.setup({ id: 'b', clients: {} })
  for (let i = 0; i < 100; i++) await p.storeRetained({ topic: `r/${i}`, payload: Buffer.alloc(500, 1), qos: 1, retain: true })
  await p.addSubscriptions({ id: 'offline', clean: false }, [{ topic: 'q/#', qos: 1 }])
  for (let i = 0; i < 20; i++) await p.outgoingEnqueueCombi([{ clientId: 'offline', qos: 1 }], { cmd: 'publish', topic: `q/${i}`, payload: Buffer.from('m'), qos: 1, retain: false, brokerId: 'b', brokerCounter: i + 1 })
  await p.close()
  expect(readdirSync(dir).filter((n) => n.endsWith('.log'))).toEqual(['state-00000001.log'])
  return dir
}

const strays: Array<[string, Buffer]> = [
  ['an empty file', Buffer.alloc(0)],
  ['a file holding only the header', STATE_FILE_HEADER],
  ['4 KB of zeros', Buffer.alloc(4096)],
  ['a header followed by garbage', Buffer.concat([STATE_FILE_HEADER, Buffer.alloc(300, 0xee)])],
]

describe('the MQTT state generation is chosen by content', () => {
  for (const [what, bytes] of strays) {
    it(`${what} as a newer generation is set aside and logged; the intact one is read`, async () => {
      const dir = await stateWithData()
      const good = readFileSync(join(dir, 'state-00000001.log'))
      writeFileSync(join(dir, 'state-00000009.log'), bytes)
      const log = recordingLog()
      const p = await FilePersistence.open(dir, { log })
      expect(p.stats.retained).toBe(100)
      expect(p.stats.queued).toBe(20)
      expect(await count(p.createRetainedStream('#'))).toBe(100)
      expect(await count(p.outgoingStream({ id: 'offline' }))).toBe(20)
      expect(p.loaded.file).toBe(join(dir, 'state-00000001.log'))
      expect(p.loaded.setAside).toEqual([expect.objectContaining({ file: join(dir, 'state-00000009.log'), renamedTo: join(dir, 'state-00000009.log.stray'), bytes: bytes.length })])
      const line = log.lines.find((l) => l.obj['code'] === 'EPERSIST_CORRUPT' && l.obj['file'] === join(dir, 'state-00000009.log'))
      expect(line?.obj).toMatchObject({ renamedTo: join(dir, 'state-00000009.log.stray'), bytes: bytes.length, at: 0 })
      await p.close()
      // the stray is kept for a person to look at, never deleted; the good file is as it was
      expect(readFileSync(join(dir, 'state-00000009.log.stray'))).toEqual(bytes)
      expect(readFileSync(join(dir, 'state-00000001.log')).subarray(0, good.length)).toEqual(good)
    })
  }

  it('an unreadable newest generation is set aside as *.damaged and the one before it is read', async () => {
    const dir = await stateWithData()
    mkdirSync(join(dir, 'state-00000002.log')) // reading it fails (EISDIR), as a bad sector would
    const p = await FilePersistence.open(dir)
    expect(p.stats.retained).toBe(100)
    expect(p.loaded.setAside).toEqual([expect.objectContaining({ renamedTo: join(dir, 'state-00000002.log.damaged') })])
    await p.close()
  })

  it('a newer generation that holds records wins over an older one (a compaction that did not delete its predecessor)', async () => {
    const dir = await stateWithData()
    const p = await FilePersistence.open(dir)
    await p.storeRetained({ topic: 'r/new', payload: Buffer.from('x'), qos: 0, retain: true })
    await p.close()
    // the older generation comes back beside it, as a crash between rename and delete leaves it
    writeFileSync(join(dir, 'state-00000000.log'), STATE_FILE_HEADER)
    const q = await FilePersistence.open(dir)
    expect(q.stats.retained).toBe(101)
    expect(q.loaded.setAside).toEqual([])
    await q.close()
    expect(readdirSync(dir).filter((n) => n.startsWith('state-')).length).toBe(1)
  })
})
