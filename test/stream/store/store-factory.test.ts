import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { parseStreamDefinition } from '../../../src/stream/stream-config.ts'
import { openStreamStore } from '../../../src/stream/store/store-factory.ts'
import { Stream } from '../../../src/stream/stream.ts'
import { recordingLog } from '../support.ts'
import { startNats, type NatsServer } from '../../support/remotes.ts'

const root = mkdtempSync(join(tmpdir(), 'edgebus-factory-'))
let server: NatsServer | null = null
afterAll(async () => {
  await server?.destroy()
  rmSync(root, { recursive: true, force: true })
})

describe('a stream definition chooses its store', () => {
  it('storage and replicas are read and checked, naming the key and the fix', () => {
    expect(parseStreamDefinition({ name: 's', subjects: ['a/#'] }).storage).toBeUndefined()
    expect(parseStreamDefinition({ name: 's', subjects: ['a/#'], storage: 'jetstream', replicas: 3 })).toMatchObject({ storage: 'jetstream', replicas: 3 })
    expect(() => parseStreamDefinition({ name: 's', subjects: ['a/#'], storage: 'jetstream', replicas: 2 })).toThrow(/replicas 2 is not valid; use 1, 3 or 5/)
    expect(() => parseStreamDefinition({ name: 's', subjects: ['a/#'], replicas: 3 })).toThrow(/replicas apply to storage "jetstream" only/)
    expect(() => parseStreamDefinition({ name: 's', subjects: ['a/#'], storage: 'disk' })).toThrow(/storage "disk" is not valid; use one of journal, jetstream/)
  })

  it('the journal by default; JetStream without a NATS connection is refused with the reason', async () => {
    const j = await openStreamStore(parseStreamDefinition({ name: 'local', subjects: ['a/#'] }), { streamsDir: root, nats: null })
    expect(j.kind).toBe('journal')
    await j.close()
    await expect(openStreamStore(parseStreamDefinition({ name: 'js', subjects: ['a/#'], storage: 'jetstream' }), { streamsDir: root, nats: null }))
      .rejects.toMatchObject({ code: 'ESTREAM_INVALID', detail: { key: 'storage' } })
    // a stream of this build (no cluster connection yet) says so rather than keeping it in a journal
    await expect(Stream.open(parseStreamDefinition({ name: 'js', subjects: ['a/#'], storage: 'jetstream' }), root, recordingLog() as never))
      .rejects.toMatchObject({ code: 'ESTREAM_INVALID', message: /needs a NATS connection/ })
  })

  it('passes replicas to JetStream: R1 opens on one nats-server, R3 is refused by it (not clustered)', async () => {
    server = await startNats()
    const { nc } = await server.client()
    const r1 = await openStreamStore(parseStreamDefinition({ name: 'one', subjects: ['a/#'], storage: 'jetstream' }), { streamsDir: root, nats: nc })
    expect(await r1.info()).toMatchObject({ kind: 'jetstream', replicas: 1 })
    await r1.close()
    await expect(openStreamStore(parseStreamDefinition({ name: 'three', subjects: ['a/#'], storage: 'jetstream', replicas: 3 }), { streamsDir: root, nats: nc }))
      .rejects.toMatchObject({ code: 'ESTORE_UNAVAILABLE', message: /replicas/i })
  })
})
