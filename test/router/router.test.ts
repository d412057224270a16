import { describe, expect, it } from 'vitest'
import { Router, SUBSCRIPTION_IDS, type FastTarget, type Listener, type RoutedPacket, type RouteEntry } from '../../src/router/router.ts'

/** A subscription of `target` on `filter`, as MqttBroker ties aedes' subscriptions to connections. */
function subscribe(router: Router, filter: string, target: FastTarget | null, opts: { qos?: 0 | 1 | 2; si?: number } = {}): { fn: Listener; got: RoutedPacket[] } {
  const got: RoutedPacket[] = []
  const fn: Listener = (packet, cb) => { got.push(packet); cb() }
  router.on(filter, fn)
  const entry = router.entryFor(filter, fn) as RouteEntry
  entry.target = target
  entry.qos = opts.qos ?? 0
  entry.si = opts.si ?? 0
  router.invalidate()
  return { fn, got }
}

const packet = (topic: string, qos: 0 | 1 | 2 = 0): RoutedPacket => ({ cmd: 'publish', topic, payload: Buffer.from('x'), qos, retain: false, dup: false })

describe('Router: one delivery per client', () => {
  it('merges a client\'s overlapping subscriptions into the one with the highest QoS [MQTT-3.3.5-1]', () => {
    const router = new Router()
    const client = {} as FastTarget
    const low = subscribe(router, 'm/+', client, { qos: 0 })
    const high = subscribe(router, 'm/#', client, { qos: 2 })
    const other = subscribe(router, 'm/a', {} as FastTarget, { qos: 1 })
    const internal = [subscribe(router, 'm/a', null), subscribe(router, 'm/#', null)]
    router.emit(packet('m/a', 2))
    expect(low.got).toHaveLength(0)
    expect(high.got.map((p) => p.qos)).toEqual([2])
    expect(other.got.map((p) => p.qos)).toEqual([1]) // min(published, granted)
    expect(internal.map((s) => s.got.length)).toEqual([1, 1]) // listeners without a connection are never merged
  })

  it('the merged copy carries the Subscription Identifiers of every matching subscription [MQTT-3.3.4-4]', () => {
    const router = new Router()
    const client = {} as FastTarget
    const subs = [
      subscribe(router, 's/a', client, { qos: 1, si: 2 }),
      subscribe(router, 's/#', client, { qos: 1, si: 3 }),
      subscribe(router, 's/+', client, { qos: 0 }), // no identifier: adds none
    ]
    const plan = router.match('s/a')
    expect(plan.entries).toHaveLength(1)
    expect([...(plan.entries[0]?.sis ?? [])].sort()).toEqual([2, 3])
    router.emit(packet('s/a', 1))
    const got = subs.flatMap((s) => s.got)
    expect(got).toHaveLength(1)
    const props = got[0]?.properties as Record<symbol, unknown> | undefined
    expect([...(props?.[SUBSCRIPTION_IDS] as number[])].sort()).toEqual([2, 3])
  })

  it('a single subscription, or overlapping ones with one identifier between them, is delivered as it is', () => {
    const router = new Router()
    const client = {} as FastTarget
    const only = subscribe(router, 'o/a', client, { qos: 1, si: 5 })
    router.emit(packet('o/a', 1))
    expect(only.got[0]?.properties).toBeUndefined()
    expect(router.match('o/a').entries[0]?.sis).toBeNull()
    subscribe(router, 'o/#', client, { qos: 0 })
    expect(router.match('o/a').entries[0]?.sis).toBeNull()
    // the highest QoS has no identifier, another one has: the copy carries that one
    subscribe(router, 'o/+', client, { qos: 2 })
    expect(router.match('o/a').entries[0]?.sis).toEqual([5])
  })
})
