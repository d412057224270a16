import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Journal } from '../../src/stream/journal.ts'
import { crashPayload, crashSubject } from './crash-child.ts'
import { runUntilKilled, tempDir } from './support.ts'

let bundleDir = ''
let bundle = ''

beforeAll(async () => {
  bundleDir = mkdtempSync(join(tmpdir(), 'edgebus-crash-bundle-'))
  bundle = join(bundleDir, 'crash-child.mjs')
  await build({
    entryPoints: [fileURLToPath(new URL('./crash-child.ts', import.meta.url))],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: bundle,
    logLevel: 'error',
  })
})

afterAll(() => {
  rmSync(bundleDir, { recursive: true, force: true })
})

interface Run { opened: number; acked: Array<[number, number]>; stderr: string }

/** Starts the child, lets it append for `ms` after it opened, kills it with SIGKILL. */
async function runAndKill(dir: string, fsync: string, ms: number): Promise<Run> {
  const { lines, stderr } = await runUntilKilled([bundle, dir, fsync], { ms, ready: (out) => out.includes('\n'), env: { ...process.env, EDGEBUS_CRASH_CHILD: '1' } })
  const first = lines.shift() ?? ''
  const opened = Number(/^open (\d+)$/.exec(first)?.[1] ?? NaN)
  const acked = lines.map((l) => l.split(' ').map(Number) as [number, number])
  return { opened, acked, stderr }
}

describe('Journal crash safety (a real process killed with SIGKILL)', () => {
  it('every acknowledged record survives, exactly once, in order, intact; appends go on from the right seq', async () => {
    const dir = tempDir()
    let expectedOpen = 0
    let totalAcked = 0
    let checked = 0
    // npm run soak sets EDGEBUS_SOAK_CYCLES for many more rounds of the same pattern
    const rounds = Math.max(1, Math.ceil(Number(process.env.EDGEBUS_SOAK_CYCLES ?? 6) / 6))
    const policies = Array.from({ length: rounds }, () => ['batch', 'batch', 'none', 'batch', 'batch', 'always']).flat()
    for (const [cycle, fsync] of policies.entries()) {
      const run = await runAndKill(dir, fsync, 50 + Math.floor(Math.random() * 250))
      expect(run.stderr).toBe('')
      expect(run.opened, `cycle ${cycle}: the child saw what the last check left`).toBe(expectedOpen)
      // acknowledgements come in order and without gaps
      let next = run.opened + 1
      for (const [a, b] of run.acked) {
        expect(a).toBe(next)
        expect(b).toBeGreaterThanOrEqual(a)
        next = b + 1
      }
      const lastAcked = next - 1
      totalAcked += lastAcked - run.opened
      const j = await Journal.open(dir)
      expect(j.recovery.corruptRecords).toEqual([])
      expect(j.recovery.damagedSegments).toEqual([])
      expect(j.lastSeq).toBeGreaterThanOrEqual(lastAcked)
      // records checked by an earlier cycle are sampled; the new ones (and, in the last cycle, all) are read in full
      const full = cycle === policies.length - 1
      for (let k = 0; k < 200 && checked > 0; k++) {
        const s = 1 + Math.floor(Math.random() * checked)
        const r = j.read(s)
        if (r === null || !r.payload.equals(crashPayload(s))) expect.fail(`cycle ${cycle}: older record ${s} lost or damaged`)
      }
      let expectSeq = full ? 1 : checked + 1
      for (const r of j.iterate(expectSeq)) {
        // plain comparisons: expect() per record would dominate the test's time
        if (r.seq !== expectSeq) expect.fail(`cycle ${cycle}: expected seq ${expectSeq}, found ${r.seq}`)
        if (!r.payload.equals(crashPayload(r.seq)) || r.subject !== crashSubject(r.seq)) expect.fail(`cycle ${cycle}: record ${r.seq} damaged`)
        expectSeq++
      }
      expect(expectSeq - 1).toBe(j.lastSeq)
      expect(j.firstSeq).toBe(1)
      checked = j.lastSeq
      expect(j.messages).toBe(j.lastSeq)
      const a = await j.append({ subject: crashSubject(j.lastSeq + 1), payload: crashPayload(j.lastSeq + 1) })
      expect(a.seq).toBe(j.lastSeq)
      expectedOpen = a.seq
      await j.close()
    }
    expect(totalAcked).toBeGreaterThan(1000) // the children did work
  }, 30_000 + Number(process.env.EDGEBUS_SOAK_CYCLES ?? 0) * 3000)
})
