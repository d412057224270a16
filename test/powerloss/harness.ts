import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CrashFs, CrashModel, seededRandom, type CrashImage, type Recording } from '../support/crash-fs.ts'

/**
 * The power-loss proof's driver (issue 15). A scenario runs a real store (Journal, FilePersistence,
 * Consumer) in this process on a directory that CrashFs records; then the recording is replayed
 * through CrashModel and, at every cut point (before each recorded write, truncation, rename,
 * unlink or sync, or a sample of them when there are more than asked for), a directory is built
 * as a power cut there would leave it, the same store code is opened on it, and the scenario's
 * check compares what it serves with what had been acknowledged before the cut.
 *
 * Everything random comes from one seed (the workload, the cut sample, the writeback of each
 * image), printed with every failure; powerloss.test.ts takes it from EDGEBUS_POWERLOSS_SEED,
 * which replays the workload's choices. The syncs' timing comes from real timers and the disk, so a failing scenario also saves
 * its recording to test-artifacts/powerloss/: `EDGEBUS_POWERLOSS_REPLAY=<file>` checks the same
 * cut points on the same images again, exactly.
 */

export interface CutContext {
  /** The cut is before event `k`: events [0, k) happened. An acknowledgement taken at CrashFs.now() = a is before it iff a <= k. */
  k: number
  image: CrashImage
  /**
   * The start index of the latest sync of a file matching the scenario's `logFile` that had
   * returned before the cut, with every sync started together with it, and whose name was durable
   * by then (-1: none). What the store acknowledged before that index is promised to survive.
   */
  lastLogSync: number
  /** The index of the latest kernel writeback before the cut (-1: none). */
  lastWriteback: number
}

export interface CutVerdict {
  /** Messages (or changes) acknowledged and promised durable by the README that the store lost. Must be 0. */
  lost: number
  /** Acknowledged, not yet promised (fsync none, or within the 100 ms sync interval), and lost: what the README allows. */
  lostAllowed: number
  /** Acknowledged ones checked at this cut. */
  checked: number
  /** What went wrong, besides the count (lost ones, a store that did not open, bytes never written). */
  problems: string[]
}

export interface Scenario<H> {
  store: string
  policy: string
  /** Files whose syncs make the store's acknowledged changes durable (state logs); null: none. */
  logFile: RegExp | null
  /** Sets up files before recording starts (they count as durable). */
  prepare?(root: string): Promise<void>
  /** The workload, recorded; returns what the checks need (what was written, when it was acknowledged). */
  run(root: string, rec: CrashFs, rand: () => number): Promise<H>
  /** Opens the store on a cut image (`root`) and checks it. */
  check(root: string, history: H, cut: CutContext): Promise<CutVerdict>
}

export interface ScenarioReport {
  store: string
  policy: string
  seed: number
  events: number
  cuts: number
  /** Acknowledged messages/changes checked, summed over the cuts. */
  checked: number
  lost: number
  lostAllowed: number
  failures: string[]
}

interface SyncBurst { logStart: number; logNode: number; running: number }

/** Runs one scenario and checks up to `maxCuts` cut points. */
export async function runScenario<H>(s: Scenario<H>, seed: number, maxCuts: number): Promise<ScenarioReport> {
  const rand = seededRandom(seed)
  const cutRand = seededRandom(seed ^ 0x5bd1e995) // its own stream: a replay draws the same cuts and images
  const replay = process.env['EDGEBUS_POWERLOSS_REPLAY']
  const work = mkdtempSync(join(tmpdir(), 'edgebus-powerloss-'))
  // the images on a tmpfs when there is one: the model decides what is durable, their real fsyncs
  // only cost time (the workload runs on the disk, with the sync latency that interleaves with writes)
  const images = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'edgebus-powerloss-cuts-'))
  const report: ScenarioReport = { store: s.store, policy: s.policy, seed, events: 0, cuts: 0, checked: 0, lost: 0, lostAllowed: 0, failures: [] }
  try {
    let rec: Recording
    let history: H
    if (replay !== undefined) {
      const saved = load(replay) as { recording: Recording; history: H; maxCuts: number }
      ;({ recording: rec, history, maxCuts } = saved)
    } else {
      const root = join(work, 'live')
      mkdirSync(root) // an empty directory, there before recording: durable
      await s.prepare?.(root)
      const live = CrashFs.record(root)
      try {
        history = await s.run(root, live, rand)
      } finally {
        live.stop()
      }
      rec = live
    }
    const events = rec.events
    report.events = events.length
    const cuts = pickCuts(events.length + 1, maxCuts, cutRand)
    const model = new CrashModel(rec)
    const syncBursts = new Map<number, SyncBurst>()
    let unnamed: SyncBurst[] = []
    let lastLogSync = -1
    let lastWriteback = -1
    let next = 0
    for (let k = 0; k <= events.length; k++) {
      if (k === cuts[next]) {
        next++
        const dir = join(images, `cut-${k}`)
        const image = model.image(dir, cutRand)
        const where = `${s.store} ${s.policy} seed ${seed} cut ${k}/${events.length} (${image.mode})`
        let v: CutVerdict
        try {
          v = await s.check(dir, history, { k, image, lastLogSync, lastWriteback })
        } catch (err) {
          v = { lost: 0, lostAllowed: 0, checked: 0, problems: [`the store did not open or failed: ${(err as Error).stack ?? String(err)}`] }
        }
        rmSync(dir, { recursive: true, force: true })
        report.cuts++
        report.checked += v.checked
        report.lost += v.lost
        report.lostAllowed += v.lostAllowed
        for (const p of v.problems) if (report.failures.length < 20) report.failures.push(`${where}: ${p}`)
      }
      if (k === events.length) break
      const ev = events[k]!
      model.apply(ev)
      if (ev.t === 'syncStart') {
        // syncs started together (no write between) are one sync of the store: it counts once all returned
        let b = k > 0 && events[k - 1]!.t === 'syncStart' ? syncBursts.get((events[k - 1] as { token: number }).token) : undefined
        if (b === undefined) b = { logStart: -1, logNode: 0, running: 0 }
        b.running++
        if (s.logFile !== null && s.logFile.test(ev.path)) {
          b.logStart = k
          b.logNode = ev.node
        }
        syncBursts.set(ev.token, b)
      } else if (ev.t === 'syncEnd') {
        const b = syncBursts.get(ev.token)
        if (b !== undefined && --b.running === 0 && b.logStart >= 0) unnamed.push(b)
      } else if (ev.t === 'writeback') lastWriteback = k
      // a synced log counts once a cut leaves it under its name (a file renamed into place: after its directory's sync)
      if (unnamed.length > 0) {
        unnamed = unnamed.filter((b) => {
          if (!model.durablyLinked(b.logNode)) return true
          lastLogSync = Math.max(lastLogSync, b.logStart)
          return false
        })
      }
    }
    if (report.failures.length > 0 && replay === undefined) {
      const file = join('test-artifacts', 'powerloss', `${s.store}-${s.policy.replace(/\W+/g, '')}-${seed}.json`)
      save(file, { recording: { root: rec.root, initial: rec.initial, events }, history, maxCuts })
      report.failures.push(`the recording is in ${file}: EDGEBUS_POWERLOSS_REPLAY=${file} checks these cuts again`)
    }
  } finally {
    rmSync(work, { recursive: true, force: true })
    rmSync(images, { recursive: true, force: true })
  }
  return report
}

/** JSON with Buffers and Maps (a recording and a scenario's history). */
function save(file: string, value: unknown): void {
  mkdirSync(join(file, '..'), { recursive: true })
  writeFileSync(file, JSON.stringify(value, function (this: Record<string, unknown>, key, v: unknown) {
    const raw = this[key]
    if (Buffer.isBuffer(raw)) return { $buffer: raw.toString('base64') }
    if (raw instanceof Map) return { $map: [...raw] }
    return v
  }))
}

function load(file: string): unknown {
  return JSON.parse(readFileSync(file, 'utf8'), (_key, v: unknown) => {
    if (v !== null && typeof v === 'object' && '$buffer' in v) return Buffer.from((v as { $buffer: string }).$buffer, 'base64')
    if (v !== null && typeof v === 'object' && '$map' in v) return new Map((v as { $map: Array<[unknown, unknown]> }).$map)
    return v
  })
}

/** Every cut point when there are few enough, else `max` of them drawn at random; sorted. */
function pickCuts(points: number, max: number, rand: () => number): number[] {
  if (points <= max) return Array.from({ length: points }, (_, i) => i)
  const chosen = new Set<number>()
  while (chosen.size < max) chosen.add(Math.floor(rand() * points))
  return [...chosen].sort((a, b) => a - b)
}

/** The next turn of the event loop (lets a batch, a write of the turn, or a sync callback run). */
export function nextTurn(): Promise<void> {
  return new Promise((r) => setImmediate(r))
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** Random bytes of the workload (from the seed, so a failure replays). */
export function randomPayload(rand: () => number, min: number, max: number): Buffer {
  const n = min + Math.floor(rand() * (max - min + 1))
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256)
  return b
}
