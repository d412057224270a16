/**
 * The child of crash.test.ts: appends to a journal as fast as it can and prints every range of
 * acknowledged (durable) sequences to stdout as "<from> <to>", until it is killed. Bundled with
 * esbuild by the test; runs only when EDGEBUS_CRASH_CHILD=1.
 */
import { Journal, type FsyncPolicy } from '../../src/stream/journal.ts'

export function crashPayload(seq: number): Buffer {
  return Buffer.from(`${seq}:${'abcdefghijklmnopqrstuvwxyz'.repeat(1 + (seq % 5)).slice(0, 20 + (seq % 97))}`)
}

export function crashSubject(seq: number): string {
  return `crash/${seq % 7}`
}

async function main(dir: string, fsync: FsyncPolicy): Promise<void> {
  const j = await Journal.open(dir, { fsync, segmentBytes: 512 * 1024 })
  process.stdout.write(`open ${j.lastSeq}\n`)
  let next = j.lastSeq + 1
  let inFlight = 0
  let scheduled = false
  const schedule = (): void => {
    if (scheduled) return
    scheduled = true
    setImmediate(pump)
  }
  const register = (p: Promise<void>, from: number, to: number): void => {
    p.then(() => {
      process.stdout.write(`${from} ${to}\n`) // a pipe write is synchronous on Linux: it is out once this returns
      inFlight -= to - from + 1
      schedule()
    }, (err: unknown) => {
      process.stderr.write(`append failed: ${String(err)}\n`)
      process.exit(3)
    })
  }
  function pump(): void {
    scheduled = false
    let cur: Promise<void> | null = null
    let start = next
    while (inFlight < 4000) {
      const seq = next++
      const a = j.appendQueued({ subject: crashSubject(seq), payload: crashPayload(seq) })
      if (a.seq !== seq) {
        process.stderr.write(`expected seq ${seq}, got ${a.seq}\n`)
        process.exit(2)
      }
      inFlight++
      if (a.durable !== cur) {
        if (cur !== null) register(cur, start, seq - 1)
        cur = a.durable
        start = seq
      }
    }
    if (cur !== null) register(cur, start, next - 1)
  }
  pump()
}

if (process.env['EDGEBUS_CRASH_CHILD'] === '1') {
  void main(process.argv[2] as string, (process.argv[3] ?? 'batch') as FsyncPolicy)
}
