import { describe, expect, it } from 'vitest'
import { headersToUserProperties, parseHeaders, userPropertiesToHeaders } from '../../src/nats/nats-headers.ts'

describe('NATS headers <-> MQTT 5 user properties', () => {
  it('round-trips names, repeated names and values', () => {
    const block = Buffer.from('NATS/1.0\r\nA: 1\r\nTag: x\r\nTag: y\r\n\r\n')
    const h = parseHeaders(block)!
    expect(h.status).toBeNull()
    const props = headersToUserProperties(h.pairs)
    expect(props).toEqual({ A: '1', Tag: ['x', 'y'] })
    expect(userPropertiesToHeaders(props)?.toString()).toBe(block.toString())
  })

  it('reads a status line and refuses what is not a header block', () => {
    expect(parseHeaders(Buffer.from('NATS/1.0 503\r\n\r\n'))?.status).toBe('503')
    expect(parseHeaders(Buffer.from('HTTP/1.1 200\r\n\r\n'))).toBeNull()
    expect(parseHeaders(Buffer.from('NATS/1.0\r\nno colon\r\n\r\n'))).toBeNull()
  })

  it('a value with CR or LF cannot end its line early', () => {
    expect(userPropertiesToHeaders({ k: 'a\r\nEvil: 1' })?.toString()).toBe('NATS/1.0\r\nk: a Evil: 1\r\n\r\n')
    expect(userPropertiesToHeaders({})).toBeNull()
  })
})
