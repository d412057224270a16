import * as fs from 'node:fs'
import { join, resolve } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import { journalIoError } from './segment.ts'

/**
 * DirLock: one writer per journal directory. A lock file holding the owner's pid is created
 * exclusively; a lock left by a process that no longer runs (a crash) is taken over. Node has no
 * flock(), so liveness is `kill(pid, 0)`: a pid reused by an unrelated process makes the lock look
 * held — the error names the pid and the file, so an operator can remove it. Within one process,
 * directories held are remembered, since the pid cannot tell two journals of one process apart.
 */
const LOCK_FILE = 'journal.lock'
const heldHere = new Set<string>()

export class DirLock {
  #released = false

  private constructor(readonly dir: string, readonly path: string, readonly key: string) {}

  /** Takes the lock of `dir` (which must exist); EJOURNAL_LOCKED when someone alive holds it. */
  static acquire(dir: string): DirLock {
    const key = resolve(dir)
    const path = join(dir, LOCK_FILE)
    if (heldHere.has(key)) throw new EdgebusError('EJOURNAL_LOCKED', `journal ${dir} is already open in this process`, { dir, pid: process.pid })
    for (let attempt = 0; ; attempt++) {
      try {
        fs.writeFileSync(path, `${process.pid}\n`, { flag: 'wx' })
        heldHere.add(key)
        return new DirLock(dir, path, key)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw journalIoError(err, 'lock', path)
      }
      let pid = Number.NaN
      try {
        // a lock without its newline was torn by a crash or power cut while being written: stale
        const text = fs.readFileSync(path, 'utf8')
        if (text.endsWith('\n')) pid = Number(text.trim())
      } catch { /* unreadable: stale */ }
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new EdgebusError('EJOURNAL_LOCKED', `journal ${dir} is in use by process ${pid} (lock file ${path})`, { dir, pid, path })
      }
      fs.rmSync(path, { force: true }) // left by a process that is gone
    }
  }

  release(): void {
    if (this.#released) return
    this.#released = true
    heldHere.delete(this.key)
    try {
      fs.rmSync(this.path, { force: true })
    } catch { /* the next open takes a stale lock over */ }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' // exists, owned by someone else
  }
}
