import * as fs from 'node:fs'
import { join, resolve } from 'node:path'
import { EdgebusError, type ErrorCode } from '../core/errors.ts'

/**
 * DirLock: one writer per store directory (a stream journal, the MQTT state). A lock file holding
 * the owner's pid and the kernel's boot id is created exclusively. A lock is stale, and taken
 * over, when its process is gone (a crash, SIGKILL; a zombie counts as gone) or when it was taken
 * in an earlier boot (after a power cut its pid may belong to some other program now). Node has no
 * flock(), so liveness is `kill(pid, 0)`; the error names the pid and the file, so an operator can
 * remove a lock whose pid was reused. Within one process, directories held are remembered, since
 * the pid cannot tell two stores of one process apart. Lock files of older versions (a pid alone)
 * are read too.
 */
export interface DirLockOptions {
  /** The lock file's name in the directory. */
  file: string
  /** The error code of a refusal (EJOURNAL_LOCKED, EPERSIST_LOCKED). */
  code: ErrorCode
  /** What the directory holds, for messages ("journal", "MQTT state"). */
  what: string
}

const heldHere = new Set<string>()

export class DirLock {
  #released = false

  private constructor(readonly dir: string, readonly path: string, readonly key: string) {}

  /** Takes the lock of `dir` (which must exist); throws `opts.code` when someone alive holds it. */
  static acquire(dir: string, opts: DirLockOptions): DirLock {
    const key = resolve(dir)
    const path = join(dir, opts.file)
    if (heldHere.has(key)) throw new EdgebusError(opts.code, `the ${opts.what} in ${dir} is already open in this process`, { dir, pid: process.pid })
    const bootId = readBootId()
    for (let attempt = 0; ; attempt++) {
      try {
        const fd = fs.openSync(path, 'wx')
        try {
          fs.writeSync(fd, `${process.pid} ${bootId}\n`)
        } catch (err) {
          // a full disk has room for the file, not its text: the server still starts (the guard
          // within this process holds; another process would read the empty file as stale)
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') { fs.closeSync(fd); fs.rmSync(path, { force: true }); throw err }
        }
        fs.closeSync(fd)
        heldHere.add(key)
        return new DirLock(dir, path, key)
      } catch (err) {
        const e = err as NodeJS.ErrnoException
        if (e.code !== 'EEXIST' || attempt > 1) {
          throw new EdgebusError(opts.code, `cannot take the lock ${path} of the ${opts.what}: ${e.message}`, { dir, path, errno: e.code ?? 'EUNKNOWN' })
        }
      }
      const owner = readOwner(path)
      if (owner !== null && owner.pid !== process.pid && (owner.boot === '' || bootId === '' || owner.boot === bootId) && processAlive(owner.pid)) {
        throw new EdgebusError(opts.code,
          `another edgebus (pid ${owner.pid}) uses the ${opts.what} in ${dir}: stop it, or give this one another data directory (dataDir, --data-dir); if no such process is edgebus, remove ${path}`,
          { dir, pid: owner.pid, path })
      }
      fs.rmSync(path, { force: true }) // left by a process that is gone, or by an earlier boot
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

/** The pid and boot id in a lock file; null when unreadable or garbage (stale). */
function readOwner(path: string): { pid: number; boot: string } | null {
  let text: string
  try {
    text = fs.readFileSync(path, 'utf8')
  } catch {
    return null // removed meanwhile
  }
  // a lock without its newline was torn by a crash or power cut while being written: stale (its
  // prefix of a pid, '2' or '22', may name a live kernel thread)
  if (!text.endsWith('\n')) return null
  const [p, b] = text.trim().split(/\s+/)
  const pid = Number(p)
  return Number.isSafeInteger(pid) && pid > 0 ? { pid, boot: b ?? '' } : null
}

function readBootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return ''
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' // exists, owned by someone else
  }
  // a killed process nobody has reaped yet (a zombie) still answers signal 0
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return true
  }
}
