import * as fs from 'node:fs'
import { dirname, resolve } from 'node:path'

/**
 * fsync a directory, so a file created or renamed in it survives a power cut (the entry is in the
 * directory's data, not the file's).
 */
export function syncDirSync(dir: string): void {
  const fd = fs.openSync(dir, 'r')
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * mkdir -p that survives a power cut: each directory it creates is synced into its parent (a new
 * directory's name is in the parent's data, so an fsync of files inside it does not keep it).
 */
export function mkdirDurableSync(dir: string): void {
  const first = fs.mkdirSync(dir, { recursive: true })
  if (first === undefined) return
  for (let d = resolve(dir); ; d = dirname(d)) {
    syncDirSync(dirname(d))
    if (d === resolve(first)) return
  }
}

/**
 * Replaces `path` with `data` so that a power cut leaves the old file or the new one, whole: a
 * temp file beside it, synced, renamed over it, and the directory synced.
 */
export async function writeFileDurable(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp`
  const fh = await fs.promises.open(tmp, 'w')
  try {
    await fh.writeFile(data)
    await fh.datasync()
  } finally {
    await fh.close()
  }
  await fs.promises.rename(tmp, path)
  syncDirSync(dirname(path))
}
