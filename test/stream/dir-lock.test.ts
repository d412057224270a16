import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DirLock } from '../../src/stream/dir-lock.ts'
import { Journal } from '../../src/stream/journal.ts'
import { tempDir } from './support.ts'

describe('one writer per journal directory', () => {
  it('a second open in the same process is refused until the first closes', async () => {
    const dir = tempDir()
    const j = await Journal.open(dir)
    expect(readFileSync(join(dir, 'journal.lock'), 'utf8').trim()).toBe(String(process.pid))
    await expect(Journal.open(dir)).rejects.toMatchObject({ code: 'EJOURNAL_LOCKED' })
    await j.close()
    expect(existsSync(join(dir, 'journal.lock'))).toBe(false)
    const k = await Journal.open(dir)
    await k.close()
  })

  it('a lock held by another live process is refused; one left by a dead process is taken over', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'journal.lock'), `${process.ppid}\n`) // our parent runs
    expect(() => DirLock.acquire(dir)).toThrow(expect.objectContaining({ code: 'EJOURNAL_LOCKED' }))
    const child = spawn(process.execPath, ['-e', ''])
    const pid = child.pid as number
    await new Promise((r) => child.on('exit', r))
    writeFileSync(join(dir, 'journal.lock'), `${pid}\n`)
    const lock = DirLock.acquire(dir)
    expect(readFileSync(join(dir, 'journal.lock'), 'utf8').trim()).toBe(String(process.pid))
    lock.release()
    writeFileSync(join(dir, 'journal.lock'), 'garbage')
    DirLock.acquire(dir).release()
  })
})
