import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { Journal } from '../../src/stream/journal.ts'
import { segmentFileName } from '../../src/stream/segment.ts'
import { payloadFor, recordingLog, tempDir } from './support.ts'

/**
 * Issue 15, item 3: recovery never trusts a file it has not verified. A sequence number is never
 * handed out twice, whatever happened to the segments; the counts say what can be served; what
 * journal.meta hides is said once.
 */

async function journalOf(n: number, opts: { segmentBytes?: number } = {}): Promise<string> {
  const dir = tempDir()
  const j = await Journal.open(dir, opts)
  const ps = []
  for (let i = 1; i <= n; i++) ps.push(j.append({ subject: `dev/${i % 4}/t`, payload: payloadFor(i) }))
  await Promise.all(ps)
  await j.close()
  return dir
}

function served(j: Journal): number[] {
  return [...j.iterate(0)].map((r) => r.seq)
}

describe('journal recovery: sequences are never used twice', () => {
  it('the only segment replaced by a directory: set aside, and numbering goes on after 1000, across restarts too', async () => {
    const dir = await journalOf(1000)
    const seg = join(dir, segmentFileName(1))
    rmSync(seg)
    mkdirSync(seg)
    const log = recordingLog()
    const j = await Journal.open(dir, { log })
    expect(j.recovery.damagedSegments).toEqual([expect.objectContaining({ segment: segmentFileName(1), renamedTo: `${segmentFileName(1)}.damaged`, firstSeq: 1, lastSeqAtMost: 1000 })])
    expect(log.lines.find((l) => l.msg === 'journal set a damaged segment aside')?.obj).toMatchObject({ segment: seg, lastSeqAtMost: 1000 })
    expect([j.firstSeq, j.lastSeq, j.messages]).toEqual([1001, 1000, 0])
    expect((await j.append({ subject: 'dev/x', payload: payloadFor(1) })).seq).toBe(1001)
    await j.close()
    // the damaged one stays aside; the mark in journal.meta still holds
    const k = await Journal.open(dir)
    expect((await k.append({ subject: 'dev/x', payload: payloadFor(2) })).seq).toBe(1002)
    await k.close()
  })

  it('a segment gone missing, or cut short, never lowers the mark', async () => {
    const dir = await journalOf(300, { segmentBytes: 4096 })
    const meta = JSON.parse(readFileSync(join(dir, 'journal.meta'), 'utf8')) as { lastSeq: number }
    expect(meta.lastSeq).toBe(300)
    for (const name of ['journal.meta.tmp']) expect(existsSync(join(dir, name))).toBe(false)
    // every segment lost (an operator cleaning up, a file system repair)
    for (let base = 1; base <= 300; base++) rmSync(join(dir, segmentFileName(base)), { force: true })
    const j = await Journal.open(dir, { segmentBytes: 4096 })
    expect([j.messages, j.lastSeq]).toEqual([0, 300])
    expect((await j.append({ subject: 'dev/x', payload: payloadFor(1) })).seq).toBe(301)
    await j.close()
  })

  it('reads journal.meta of older versions (no mark) as before', async () => {
    const dir = await journalOf(10)
    writeFileSync(join(dir, 'journal.meta'), JSON.stringify({ format: 1, firstSeq: 1, maxMsgsPerSubject: 0 }) + '\n')
    const j = await Journal.open(dir)
    expect([j.firstSeq, j.lastSeq, j.messages]).toEqual([1, 10, 10])
    await j.close()
    expect(JSON.parse(readFileSync(join(dir, 'journal.meta'), 'utf8'))).toMatchObject({ format: 1, lastSeq: 10 })
  })
})

describe('journal recovery: counts and what journal.meta hides', () => {
  it('a flipped byte in a segment with a valid index: the record is not served, not counted, and logged once with file and offset', async () => {
    const dir = await journalOf(1000, { segmentBytes: 1 << 20 })
    const seg = join(dir, segmentFileName(1))
    const buf = readFileSync(seg)
    let at = 0
    for (let i = 0; i < 499; i++) at += buf.readUInt32LE(at + 4) // the frame of seq 500
    buf[at + 40] = (buf[at + 40] as number) ^ 0x01
    writeFileSync(seg, buf)
    const log = recordingLog()
    const j = await Journal.open(dir, { log })
    const seqs = served(j)
    expect(seqs).toHaveLength(999)
    expect(seqs).not.toContain(500)
    expect(j.messages).toBe(999)
    served(j) // read again: no second line
    const lines = log.lines.filter((l) => l.msg === 'journal skipped a corrupt record')
    expect(lines).toHaveLength(1)
    expect(lines[0]?.obj).toMatchObject({ segment: seg, start: at })
    await j.close()
  })

  it('the same damage is found without any read: segments trusted by their index are checked in the background after open', async () => {
    const dir = await journalOf(3000, { segmentBytes: 128 * 1024 })
    const seg = join(dir, segmentFileName(1))
    const buf = readFileSync(seg)
    buf[buf.readUInt32LE(4) + 40] = (buf[buf.readUInt32LE(4) + 40] as number) ^ 0x01 // seq 2
    writeFileSync(seg, buf)
    const log = recordingLog()
    const j = await Journal.open(dir, { segmentBytes: 128 * 1024, log })
    await vi.waitFor(() => expect(j.messages).toBe(2999))
    expect(log.lines.filter((l) => l.msg === 'journal skipped a corrupt record')).toHaveLength(1)
    expect(served(j)).toHaveLength(2999)
    expect(log.lines.filter((l) => l.msg === 'journal skipped a corrupt record')).toHaveLength(1)
    await j.close()
  })

  it('journal.meta with a firstSeq that hides records present is logged, with how many and which', async () => {
    const dir = await journalOf(1000)
    writeFileSync(join(dir, 'journal.meta'), JSON.stringify({ format: 1, firstSeq: 600, maxMsgsPerSubject: 0 }) + '\n')
    const log = recordingLog()
    const j = await Journal.open(dir, { log })
    expect([j.firstSeq, j.messages, served(j).length]).toEqual([600, 401, 401])
    const line = log.lines.find((l) => l.obj['hidden'] !== undefined)
    expect(line?.obj).toMatchObject({ path: join(dir, 'journal.meta'), firstSeq: 600, hidden: 599, fromSeq: 1, toSeq: 599 })
    await j.close()
  })

  it('journal.meta claiming a firstSeq beyond its own mark is reported as damaged, and numbering stays above both', async () => {
    const dir = await journalOf(10)
    writeFileSync(join(dir, 'journal.meta'), JSON.stringify({ format: 1, firstSeq: 5000, maxMsgsPerSubject: 0, lastSeq: 10 }) + '\n')
    const log = recordingLog()
    const j = await Journal.open(dir, { log })
    expect(log.lines.some((l) => l.obj['code'] === 'EJOURNAL_CORRUPT' && l.obj['firstSeq'] === 5000)).toBe(true)
    expect(j.messages).toBe(0)
    expect((await j.append({ subject: 'dev/x', payload: payloadFor(1) })).seq).toBe(5000)
    await j.close()
  })
})
