import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * Every temp dir the tests (and the servers they start) make goes under one directory of this run,
 * removed at the end: TMPDIR is read by os.tmpdir() in the workers and child processes.
 */
export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'edgebus-tests-'))
  process.env.TMPDIR = root
  return () => rmSync(root, { recursive: true, force: true })
}
