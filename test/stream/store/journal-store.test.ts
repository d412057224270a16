import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe } from 'vitest'
import { JournalStore } from '../../../src/stream/store/journal-store.ts'
import { limits, storeCases } from './cases.ts'

const root = mkdtempSync(join(tmpdir(), 'edgebus-store-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

describe('StreamStore: the file journal', () => {
  let n = 0
  const dirs = new Map<string, string>()
  storeCases({
    async open(name, l) {
      const dir = join(root, `${name}-${n++}`)
      dirs.set(name, dir)
      return JournalStore.open(dir, limits(l), { fsync: 'batch' })
    },
    async reopen(store, name, l) {
      await store.close()
      return JournalStore.open(dirs.get(name)!, limits(l), { fsync: 'batch' })
    },
  })
})
