import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseClientFrame } from '../../src/ws/json-protocol.ts'

const parse = (v: unknown, binary = false) => parseClientFrame(Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)), binary)

describe('JSON protocol frames', () => {
  it('parses every op, subjects in either syntax', () => {
    expect(parse({ op: 'hello', id: 1 })).toEqual({ op: 'hello', id: '1', token: null })
    expect(parse({ op: 'ping' })).toEqual({ op: 'ping', id: null })
    expect(parse({ op: 'sub', id: 'a', filter: 'sensors.>' })).toEqual({ op: 'sub', id: 'a', filter: 'sensors/#', input: 'sensors.>', qos: 0 })
    expect(parse({ op: 'sub', filter: 'sensors/+/t', qos: 1 })).toMatchObject({ filter: 'sensors/+/t', qos: 1 })
    expect(parse({ op: 'unsub', sub: '3' })).toEqual({ op: 'unsub', id: null, sub: '3' })
    const pub = parse({ op: 'pub', subject: 'a.b', payload: 'x', retain: true, qos: 2 })
    expect(pub).toMatchObject({ op: 'pub', subject: 'a/b', retain: true, qos: 2 })
    expect((pub as { payload: Buffer }).payload.toString()).toBe('x')
    expect((parse({ op: 'pub', subject: 'a', payload_base64: '/wD+' }) as { payload: Buffer }).payload).toEqual(Buffer.from([0xff, 0, 0xfe]))
    expect((parse({ op: 'pub', subject: 'a', payload: { t: 21.5 } }) as { payload: Buffer }).payload.toString()).toBe('{"t":21.5}')
    expect(parse({ op: 'next', stream: 's', consumer: 'c', batch: 5, wait: 100 })).toEqual({ op: 'next', id: null, stream: 's', consumer: 'c', batch: 5, wait: 100 })
    expect(parse({ op: 'ack', stream: 's', consumer: 'c', ack: [1, 2], nak: [3] })).toEqual({ op: 'ack', id: null, stream: 's', consumer: 'c', ack: [1, 2], nak: [3], term: [], nakDelay: 0 })
    expect(parse({ op: 'ack', stream: 's', consumer: 'c', nak: [3], nakDelay: '5s' })).toMatchObject({ nak: [3], nakDelay: 5000 })
    expect(parse({ op: 'replay', stream: 's', start: 'since=1m', filter: 'a.*' })).toMatchObject({ op: 'replay', stream: 's', start: { startTime: expect.any(Number) }, filter: 'a/+', nats: true })
    expect(parse({ op: 'replay', stream: 's' })).toMatchObject({ start: 'all', filter: null })
  })

  it('answers every malformed frame with a code', () => {
    const code = (v: unknown, binary = false) => (parse(v, binary) as { code?: string }).code
    expect(code('{not json')).toBe('EWS_JSON')
    expect(code('[1,2]')).toBe('EWS_JSON')
    expect(code('null')).toBe('EWS_JSON')
    expect(code({ op: 'ping' }, true)).toBe('EWS_FRAME')
    expect(code({ op: 'fly' })).toBe('EWS_OP')
    expect(code({})).toBe('EWS_OP')
    expect(code({ op: 'ping', id: { x: 1 } })).toBe('EWS_FIELD')
    expect(code({ op: 'sub' })).toBe('EWS_FIELD')
    expect(code({ op: 'sub', filter: 'a', qos: 2 })).toBe('EWS_FIELD')
    expect(code({ op: 'sub', filter: 'a.>.b' })).toBe('ESUBJECT_INVALID')
    expect(code({ op: 'unsub' })).toBe('EWS_FIELD')
    expect(code({ op: 'pub', subject: 'a' })).toBe('EWS_FIELD')
    expect(code({ op: 'pub', subject: 'a.*', payload: 'x' })).toBe('ESUBJECT_WILDCARD')
    expect(code({ op: 'pub', subject: 'a', payload: 'x', retain: 'yes' })).toBe('EWS_FIELD')
    expect(code({ op: 'pub', subject: 'a', payload: 'x', qos: 3 })).toBe('EWS_FIELD')
    expect(code({ op: 'hello', token: 5 })).toBe('EWS_FIELD')
    expect(code({ op: 'next', consumer: 'c' })).toBe('EWS_FIELD')
    expect(code({ op: 'next', stream: 's', consumer: 'c', batch: 0 })).toBe('EWS_FIELD')
    expect(code({ op: 'ack', stream: 's', consumer: 'c', ack: ['x'] })).toBe('EWS_FIELD')
  })

  it('never throws on random input', () => {
    fc.assert(fc.property(fc.oneof(fc.string(), fc.json(), fc.uint8Array().map((a) => Buffer.from(a).toString('latin1'))), fc.boolean(), (text, binary) => {
      const r = parseClientFrame(Buffer.from(text), binary)
      expect(typeof r.op).toBe('string')
    }), { numRuns: 3000 })
  })
})
