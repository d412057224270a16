import { describe, expect, it } from 'vitest'
import mqttPacket from 'mqtt-packet'
import { mayCarryMarker, orderMarker, restoreUserPropertyOrder, userPropertyOrder } from '../../src/mqtt/user-property-order.ts'

const pair = (name: string, value: string): Buffer => Buffer.concat([Buffer.from([0x26, 0, name.length]), Buffer.from(name), Buffer.from([0, value.length]), Buffer.from(value)])
const generate = (properties: Record<string, unknown>, qos: 0 | 1 = 1): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic: 't/x', payload: Buffer.from('hi'), qos, messageId: qos > 0 ? 5 : undefined, retain: false, dup: false, properties } as never, { protocolVersion: 5 })

/** A PUBLISH with a raw property block, hand-encoded. */
function publish(props: Buffer, qos: 0 | 1 = 1): Buffer {
  const body = Buffer.concat([Buffer.from([0, 3]), Buffer.from('t/x'), qos > 0 ? Buffer.from([0, 5]) : Buffer.alloc(0), Buffer.from([props.length]), props, Buffer.from('hi')])
  return Buffer.concat([Buffer.from([0x30 | (qos << 1), body.length]), body])
}

describe('user property order through aedes [MQTT-3.3.2-18]', () => {
  it('keeps the entries only when grouping them by name would reorder them', () => {
    const interleaved = Buffer.concat([pair('b', '1'), pair('a', '2'), pair('b', '3')])
    expect(userPropertyOrder(interleaved, 0, interleaved.length)).toEqual(interleaved)
    const grouped = Buffer.concat([pair('b', '1'), pair('b', '3'), pair('a', '2')])
    expect(userPropertyOrder(grouped, 0, grouped.length)).toBeNull()
    const withOthers = Buffer.concat([Buffer.from([0x01, 0x01]), pair('x', '1'), Buffer.from([0x02, 0, 0, 0, 9]), pair('y', '2'), pair('x', '3')])
    expect(userPropertyOrder(withOthers, 0, withOthers.length)).toEqual(Buffer.concat([pair('x', '1'), pair('y', '2'), pair('x', '3')]))
  })

  it('puts the entries back in place of the marker mqtt-packet wrote, at QoS 0 and 1', () => {
    const entries = Buffer.concat([pair('b', '1'), pair('a', '2'), pair('b', '3')])
    for (const qos of [0, 1] as const) {
      const marked = generate({ contentType: 'c', userProperties: orderMarker(entries) }, qos)
      expect(mayCarryMarker(marked)).toBe(true)
      const restored = restoreUserPropertyOrder(marked)
      expect(restored).toEqual(publish(Buffer.concat([Buffer.from([0x03, 0, 1, 0x63]), entries]), qos))
      const parsed: Array<Record<string, unknown>> = []
      const parser = mqttPacket.parser({ protocolVersion: 5 })
      parser.on('packet', (p) => parsed.push(p as never))
      parser.on('error', (e) => { throw e })
      parser.parse(restored)
      expect(parsed[0]).toMatchObject({ topic: 't/x', qos, properties: { contentType: 'c', userProperties: { b: ['1', '3'], a: '2' } } })
    }
  })

  it('leaves a PUBLISH without the marker as it is', () => {
    const plain = generate({ userProperties: { a: '1' } })
    expect(mayCarryMarker(plain)).toBe(false)
    expect(restoreUserPropertyOrder(plain)).toBe(plain)
  })
})
