import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DirLock } from '../../src/storage/dir-lock.ts'
import { Journal } from '../../src/stream/journal.ts'
import { tempDir } from '../stream/support.ts'

const LOCK = { file: 'test.lock', code: 'EJOURNAL_LOCKED', what: 'test store' } as const
const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''])
  await new Promise((r) => child.on('exit', r))
  return child.pid as number
}

describe('one writer per store directory (the journal and the MQTT state share this lock)', () => {
  it('a second open in the same process is refused until the first closes', async () => {
    const dir = tempDir()
    const j = await Journal.open(dir)
    expect(readFileSync(join(dir, 'journal.lock'), 'utf8').trim()).toBe(`${process.pid} ${bootId}`)
    await expect(Journal.open(dir)).rejects.toMatchObject({ code: 'EJOURNAL_LOCKED' })
    await j.close()
    expect(existsSync(join(dir, 'journal.lock'))).toBe(false)
    const k = await Journal.open(dir)
    await k.close()
  })

  it('a lock held by another live process of this boot is refused, with its pid and file named', () => {
    const dir = tempDir()
    writeFileSync(join(dir, LOCK.file), `${process.ppid} ${bootId}\n`) // our parent runs
    expect(() => DirLock.acquire(dir, LOCK)).toThrow(expect.objectContaining({ code: 'EJOURNAL_LOCKED', detail: expect.objectContaining({ pid: process.ppid }) }))
    // the format of older versions: a pid alone
    writeFileSync(join(dir, LOCK.file), `${process.ppid}\n`)
    expect(() => DirLock.acquire(dir, LOCK)).toThrow(expect.objectContaining({ code: 'EJOURNAL_LOCKED' }))
  })

  it('a lock of a process that is gone, of an earlier boot, or unreadable is taken over', async () => {
    const dir = tempDir()
    const stale = [`${await deadPid()}\n`, `${process.ppid} 00000000-0000-0000-0000-000000000000\n`, 'garbage']
    for (const text of stale) {
      writeFileSync(join(dir, LOCK.file), text)
      const lock = DirLock.acquire(dir, LOCK)
      expect(readFileSync(join(dir, LOCK.file), 'utf8').trim()).toBe(`${process.pid} ${bootId}`)
      lock.release()
      expect(existsSync(join(dir, LOCK.file))).toBe(false)
    }
  })
})
