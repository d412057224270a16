import { describe, expect, it } from 'vitest'
import { SessionRegistry } from '../../src/mqtt/session-registry.ts'

const v4 = (code = 0, present = 0): Buffer => Buffer.from([0x20, 0x02, present, code])
const v5 = (code = 0, present = 0): Buffer => Buffer.from([0x20, 0x03, present, code, 0x00])
const presentBit = (b: Buffer): number => (b[2] as number) & 1

describe('SessionRegistry (Session Present for sessions without subscriptions)', () => {
  it('MQTT 3.1.1: clean=0 keeps a session, a resume says present, clean=1 ends it [MQTT-3.2.2-1, 3.2.2-2]', () => {
    const r = new SessionRegistry()
    expect(presentBit(r.connack(v4(), { id: 'a', clean: false, version: 4 }))).toBe(0) // first time: nothing to resume
    expect(presentBit(r.connack(v4(), { id: 'a', clean: false, version: 4 }))).toBe(1)
    expect(presentBit(r.connack(v4(), { id: 'a', clean: true, version: 4 }))).toBe(0) // and the session ends
    expect(presentBit(r.connack(v4(), { id: 'a', clean: false, version: 4 }))).toBe(0)
    expect(r.size).toBe(1)
  })

  it('MQTT 5: kept only with a Session Expiry Interval; Clean Start 1 starts afresh but is kept; ended() forgets', () => {
    const r = new SessionRegistry()
    // as aedes sets them: clean = (Session Expiry 0), _cleanStart = the CONNECT's flag
    const c5 = (cleanStart: boolean, expiry: number) => ({ id: 'b', clean: expiry === 0, _cleanStart: cleanStart, version: 5, sessionExpiryInterval: expiry })
    r.connack(v5(), c5(false, 0))
    expect(presentBit(r.connack(v5(), c5(false, 60)))).toBe(0)
    expect(presentBit(r.connack(v5(), c5(true, 60)))).toBe(0) // [MQTT-3.1.2-4, 3.2.2-2]
    expect(presentBit(r.connack(v5(), c5(false, 60)))).toBe(1)
    expect(presentBit(r.connack(v5(), c5(false, 0)))).toBe(1) // resumed, and ends with this connection
    expect(presentBit(r.connack(v5(), c5(false, 60)))).toBe(0)
    r.connack(v5(), c5(false, 60))
    r.ended('b')
    expect(presentBit(r.connack(v5(), c5(false, 60)))).toBe(0)
  })

  it('leaves refused CONNACKs and packets aedes already marked alone, and never writes into aedes\' buffer', () => {
    const r = new SessionRegistry()
    r.connack(v4(), { id: 'c', clean: false, version: 4 })
    const refused = v4(5)
    expect(r.connack(refused, { id: 'c', clean: false, version: 4 })).toBe(refused)
    expect(refused[2]).toBe(0)
    const marked = v4(0, 1)
    expect(r.connack(marked, { id: 'c', clean: false, version: 4 })).toBe(marked)
    const plain = v5()
    const out = r.connack(plain, { id: 'c', clean: false, version: 4 })
    expect([presentBit(out), presentBit(plain)]).toEqual([1, 0])
  })
})
