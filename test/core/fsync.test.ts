import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { mkdirDurableSync, writeFileDurable } from '../../src/core/fsync.ts'
import { CrashFs, CrashModel, seededRandom, WRITEBACK_MODES } from '../support/crash-fs.ts'

// Checked with the power-cut model (test/support/crash-fs.ts): at every point of the recording,
// in every writeback mode, what a cut leaves.

const dirs: string[] = []
let rec: CrashFs | null = null

function temp(): string {
  const d = mkdtempSync(join(tmpdir(), 'edgebus-fsync-'))
  dirs.push(d)
  return d
}

afterEach(() => {
  rec?.stop()
  rec = null
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** Every image a cut at each point of the recording leaves, in each writeback mode. */
function* everyCut(recording: CrashFs): Generator<{ image: string; k: number }> {
  const model = new CrashModel(recording)
  for (let k = 0; k <= recording.events.length; k++) {
    for (const mode of WRITEBACK_MODES) {
      const image = temp()
      model.image(image, seededRandom(k), mode)
      yield { image, k }
    }
    if (k < recording.events.length) model.apply(recording.events[k]!)
  }
}

describe('mkdirDurableSync', () => {
  it('once it returned, every directory it made is there after a power cut', () => {
    const root = temp()
    rec = CrashFs.record(root)
    mkdirDurableSync(join(root, 'data', 'streams', 'telemetry'))
    const done = rec.now()
    mkdirDurableSync(join(root, 'data', 'streams', 'telemetry')) // there already: nothing to do
    expect(rec.now()).toBe(done)
    rec.stop()
    let checked = 0
    for (const { image, k } of everyCut(rec)) {
      if (k < done) continue
      expect(existsSync(join(image, 'data', 'streams', 'telemetry')), `cut ${k}`).toBe(true)
      checked++
    }
    expect(checked).toBe(WRITEBACK_MODES.length)
  })
})

describe('writeFileDurable', () => {
  it('a power cut at any point leaves the old file or the new one, whole; once it resolved, the new one', async () => {
    const root = temp()
    writeFileSync(join(root, 'streams.json'), '["old"]')
    rec = CrashFs.record(root)
    await writeFileDurable(join(root, 'streams.json'), '["old","new"]')
    const done = rec.now()
    rec.stop()
    const seen = new Set<string>()
    for (const { image, k } of everyCut(rec)) {
      const text = readFileSync(join(image, 'streams.json'), 'utf8')
      expect(['["old"]', '["old","new"]'], `cut ${k}`).toContain(text)
      if (k >= done) expect(text).toBe('["old","new"]')
      seen.add(text)
    }
    expect(seen.size).toBe(2)
  })
})
