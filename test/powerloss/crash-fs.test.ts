import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { CrashFs, CrashModel, seededRandom, WRITEBACK_MODES, type CrashEvent, type WritebackMode } from '../support/crash-fs.ts'

// The power-cut model the power-loss proof rests on: what it keeps must be exactly what a strict
// POSIX file system promises after fsync (synced bytes, synced directory entries), nothing more.

const dirs: string[] = []
let recording: CrashFs | null = null

function temp(): string {
  const d = mkdtempSync(join(tmpdir(), 'edgebus-crashfs-'))
  dirs.push(d)
  return d
}

afterEach(() => {
  recording?.stop()
  recording = null
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function record(root: string): CrashFs {
  recording = CrashFs.record(root)
  return recording
}

/** The image after all recorded events, in a given writeback mode. */
function imageAfter(rec: CrashFs, mode: WritebackMode, seed = 1, upTo = rec.events.length): string {
  const model = new CrashModel(rec)
  for (const ev of rec.events.slice(0, upTo)) model.apply(ev)
  const out = temp()
  model.image(out, seededRandom(seed), mode)
  return out
}

function read(path: string): string | null {
  try {
    return fs.readFileSync(path, 'latin1')
  } catch {
    return null
  }
}

function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r')
  fs.fsyncSync(fd)
  fs.closeSync(fd)
}

describe('CrashFs, the recording layer', () => {
  it('records the writes and syncs made through the ESM namespace of node:fs, and only under its root', () => {
    const root = temp()
    const outside = temp()
    const rec = record(root)
    const fd = fs.openSync(join(root, 'a'), 'w')
    fs.writeSync(fd, Buffer.from('hello'), 0, 5, 0)
    fs.fdatasyncSync(fd)
    fs.closeSync(fd)
    fs.writeFileSync(join(outside, 'b'), 'not recorded')
    const kinds = rec.events.map((e) => e.t)
    expect(kinds).toEqual(['link', 'write', 'syncStart', 'syncEnd'])
    expect((rec.events[1] as Extract<CrashEvent, { t: 'write' }>).data.toString()).toBe('hello')
    expect(read(join(root, 'a'))).toBe('hello') // the real file system did the work
  })

  it('stop() puts node:fs back', () => {
    const root = temp()
    const rec = record(root)
    rec.stop()
    fs.writeFileSync(join(root, 'x'), 'after')
    expect(rec.events).toEqual([])
  })
})

describe('CrashModel, a power cut', () => {
  it('keeps the bytes a fdatasync made durable and drops the writes after it', () => {
    const root = temp()
    fs.writeFileSync(join(root, 'log'), 'base|') // before recording: durable
    const rec = record(root)
    const fd = fs.openSync(join(root, 'log'), 'r+')
    fs.writeSync(fd, Buffer.from('synced|'), 0, 7, 5)
    fs.fdatasyncSync(fd)
    fs.writeSync(fd, Buffer.from('unsynced'), 0, 8, 12)
    fs.closeSync(fd)
    rec.stop()
    expect(read(join(imageAfter(rec, 'nothing'), 'log'))).toBe('base|synced|')
    expect(read(join(imageAfter(rec, 'everything'), 'log'))).toBe('base|synced|unsynced')
    for (let seed = 1; seed <= 50; seed++) {
      for (const mode of WRITEBACK_MODES) {
        const got = read(join(imageAfter(rec, mode, seed), 'log')) as string
        expect(got.startsWith('base|synced|')).toBe(true)
      }
    }
  })

  it('tears an unsynced write at a random byte: always a prefix of it, sometimes all, sometimes none', () => {
    const root = temp()
    const rec = record(root)
    const fd = fs.openSync(join(root, 'f'), 'w')
    fs.fsyncSync(fd)
    syncDir(root)
    fs.writeSync(fd, Buffer.from('0123456789abcdef'), 0, 16, 0)
    fs.closeSync(fd)
    rec.stop()
    const seen = new Set<number>()
    for (let seed = 1; seed <= 200; seed++) {
      const got = read(join(imageAfter(rec, 'prefix', seed), 'f')) as string
      expect('0123456789abcdef'.startsWith(got)).toBe(true)
      seen.add(got.length)
    }
    expect(seen.has(0)).toBe(true)
    expect(seen.has(16)).toBe(true)
    expect([...seen].some((n) => n > 0 && n < 16)).toBe(true)
  })

  it('a sync counts once it returned: a cut between its start and its end keeps nothing of it', () => {
    const root = temp()
    const rec = record(root)
    const fd = fs.openSync(join(root, 'f'), 'w')
    fs.fsyncSync(fd)
    syncDir(root)
    fs.writeSync(fd, Buffer.from('data'), 0, 4, 0)
    fs.fdatasyncSync(fd)
    fs.closeSync(fd)
    rec.stop()
    const start = rec.events.findLastIndex((e) => e.t === 'syncStart')
    expect(read(join(imageAfter(rec, 'nothing', 1, start + 1), 'f'))).toBe('')
    expect(read(join(imageAfter(rec, 'nothing', 1, start + 2), 'f'))).toBe('data')
  })

  it('a new file, even synced, is not there until its directory is synced (strict POSIX)', () => {
    const root = temp()
    const rec = record(root)
    const fd = fs.openSync(join(root, 'new'), 'wx')
    fs.writeSync(fd, Buffer.from('x'), 0, 1, 0)
    fs.fdatasyncSync(fd)
    fs.closeSync(fd)
    const beforeDirSync = rec.now()
    syncDir(root)
    rec.stop()
    expect(read(join(imageAfter(rec, 'nothing', 1, beforeDirSync), 'new'))).toBeNull()
    expect(read(join(imageAfter(rec, 'nothing'), 'new'))).toBe('x')
  })

  it('a rename over a file is undone by a cut before the directory sync; after it, the new file is whole only if it was synced', () => {
    const root = temp()
    fs.writeFileSync(join(root, 'meta'), 'old')
    const rec = record(root)
    fs.writeFileSync(join(root, 'meta.tmp'), 'new, never synced')
    fs.renameSync(join(root, 'meta.tmp'), join(root, 'meta'))
    const beforeDirSync = rec.now()
    syncDir(root)
    rec.stop()
    expect(read(join(imageAfter(rec, 'nothing', 1, beforeDirSync), 'meta'))).toBe('old')
    // the rename is durable, the data is not: the classic empty file after a power cut
    expect(read(join(imageAfter(rec, 'nothing'), 'meta'))).toBe('')
    expect(read(join(imageAfter(rec, 'everything', 1, beforeDirSync), 'meta'))).toBe('new, never synced')
  })

  it('an unlink is undone by a cut before the directory sync', () => {
    const root = temp()
    fs.writeFileSync(join(root, 'old.seg'), 'records')
    const rec = record(root)
    fs.rmSync(join(root, 'old.seg'))
    const beforeDirSync = rec.now()
    syncDir(root)
    rec.stop()
    expect(read(join(imageAfter(rec, 'nothing', 1, beforeDirSync), 'old.seg'))).toBe('records')
    expect(read(join(imageAfter(rec, 'everything', 1, beforeDirSync), 'old.seg'))).toBeNull()
    expect(read(join(imageAfter(rec, 'nothing'), 'old.seg'))).toBeNull()
  })

  it('sees the callback and promise forms (fs.write, fs.fdatasync, FileHandle, fs/promises rename), and directories made with mkdirSync', async () => {
    const root = temp()
    const rec = record(root)
    fs.mkdirSync(join(root, 'a', 'b'), { recursive: true })
    syncDir(root)
    syncDir(join(root, 'a'))
    const fd = fs.openSync(join(root, 'a', 'b', 'seg'), 'wx+')
    await new Promise<void>((res, rej) => fs.write(fd, Buffer.from('cb-write'), 0, 8, 0, (e) => (e ? rej(e) : res())))
    await new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res())))
    fs.closeSync(fd)
    const fh = await fsp.open(join(root, 'a', 'b', 'meta.tmp'), 'w')
    await fh.writeFile('{"firstSeq":1}\n')
    await fh.datasync()
    await fh.close()
    await fsp.rename(join(root, 'a', 'b', 'meta.tmp'), join(root, 'a', 'b', 'meta'))
    const dh = await fs.promises.open(join(root, 'a', 'b'), 'r')
    await dh.sync()
    await dh.close()
    rec.stop()
    const img = imageAfter(rec, 'nothing')
    expect(read(join(img, 'a', 'b', 'seg'))).toBe('cb-write')
    expect(read(join(img, 'a', 'b', 'meta'))).toBe('{"firstSeq":1}\n')
    expect(read(join(img, 'a', 'b', 'meta.tmp'))).toBeNull()
  })

  it('the kernel writeback event makes everything durable', () => {
    const root = temp()
    const rec = record(root)
    fs.writeFileSync(join(root, 'f'), 'dirty')
    rec.writeback()
    rec.stop()
    expect(read(join(imageAfter(rec, 'nothing'), 'f'))).toBe('dirty')
  })

  it('the same seed builds the same image', () => {
    const root = temp()
    const rec = record(root)
    const fd = fs.openSync(join(root, 'f'), 'w')
    for (let i = 0; i < 20; i++) fs.writeSync(fd, Buffer.from(`record-${i};`.padEnd(10)), 0, 10, i * 10)
    fs.closeSync(fd)
    rec.stop()
    for (const mode of WRITEBACK_MODES) {
      expect(read(join(imageAfter(rec, mode, 42), 'f'))).toBe(read(join(imageAfter(rec, mode, 42), 'f')))
    }
  })
})
