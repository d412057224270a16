import { afterAll, beforeAll, describe } from 'vitest'
import type { NatsConnection } from '@nats-io/transport-node'
import { JetStreamStore } from '../../../src/stream/store/jetstream-store.ts'
import { startNats, type NatsServer } from '../../support/remotes.ts'
import { limits, storeCases } from './cases.ts'

/** The same cases on Debian's nats-server 2.9.10 with JetStream (-js -p <free port> -sd <tmp>), R1. */
let server: NatsServer
let nc: NatsConnection

beforeAll(async () => {
  server = await startNats()
  nc = (await server.client()).nc
})
afterAll(async () => {
  await server?.destroy()
})

describe('StreamStore: JetStream (nats-server -js, R1)', () => {
  let n = 0
  storeCases({
    async open(name, l) {
      return JetStreamStore.open(nc, { name: `${name}-${n++}`, limits: limits(l), replicas: 1 })
    },
    async reopen(store, _name, l) {
      await store.close()
      return JetStreamStore.open(nc, { name: (store as JetStreamStore).stream.slice(3), limits: limits(l), replicas: 1 })
    },
  })
})
