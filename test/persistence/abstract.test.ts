import assert from 'node:assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, it } from 'vitest'
import { FilePersistence } from '../../src/persistence/file-persistence.ts'

/**
 * The abstract test suite of aedes-persistence (the one every aedes persistence must pass), run
 * as it is against FilePersistence. The suite is written for node:test: this harness gives each
 * case a `t` with plan(), diagnostic() and `assert` — node:assert's functions, as node:test's
 * t.assert has them (so deepEqual is the loose one the suite was written against) — and checks
 * the plan at the end.
 */
const require = createRequire(import.meta.url)
const abstractSuite = require('aedes-persistence/abstract.js') as (opts: Record<string, unknown>) => void

type AssertFns = Record<string, (...args: unknown[]) => unknown>

interface NodeTestContext {
  plan(n: number): void
  diagnostic(msg: string): void
  assert: AssertFns
}

const dirs: string[] = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

function nodeTestAdapter(name: string, fn: (t: NodeTestContext) => Promise<void>): void {
  it(name, async () => {
    let planned: number | null = null
    let count = 0
    const counted: AssertFns = {}
    for (const key of ['ok', 'equal', 'notEqual', 'deepEqual', 'notDeepEqual', 'strictEqual', 'deepStrictEqual', 'throws', 'rejects', 'fail'] as const) {
      const f = (assert as unknown as AssertFns)[key] as (...args: unknown[]) => unknown
      counted[key] = (...args: unknown[]) => { count++; return f(...args) }
    }
    const t: NodeTestContext = {
      plan(n) { planned = n },
      diagnostic() {},
      assert: counted,
    }
    await fn(t)
    if (planned !== null) assert.strictEqual(count, planned, `planned ${planned} assertions, ran ${count}`)
  })
}

describe('aedes-persistence abstract suite against FilePersistence', () => {
  abstractSuite({
    test: nodeTestAdapter,
    testAsync: true,
    persistence: async () => {
      const dir = mkdtempSync(join(tmpdir(), 'edgebus-abstract-'))
      dirs.push(dir)
      return FilePersistence.open(dir, { syncIntervalMs: 20 })
    },
  })
})
