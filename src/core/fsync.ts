import * as fs from 'node:fs'

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
