import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { NatsParser, type NatsOp } from '../../src/nats/nats-parser.ts'

const LIMITS = { maxControlLine: 4096, maxPayload: 1024 }

function parseAll(chunks: Buffer[], limits = LIMITS): { ops: NatsOp[]; error: string | null } {
  const p = new NatsParser(limits)
  const ops: NatsOp[] = []
  for (const c of chunks) {
    const r = p.feed(c, (op) => { ops.push(op); return true })
    if (r.error !== null) return { ops, error: r.error.message }
  }
  return { ops, error: null }
}

const STREAM = Buffer.from('CONNECT {"verbose":false}\r\nSUB a.* q 1\r\nPUB a.b 5\r\nhello\r\nHPUB a.c _INBOX.x 12 14\r\nNATS/1.0\r\n\r\nhi\r\nunsub 1 3\r\nPING\r\nPONG\r\nPUB e 0\r\n\r\n')

describe('NatsParser', () => {
  it('reads every client operation of the protocol, op names in any case', () => {
    const { ops, error } = parseAll([STREAM])
    expect(error).toBeNull()
    expect(ops.map((o) => o.op)).toEqual(['CONNECT', 'SUB', 'PUB', 'PUB', 'UNSUB', 'PING', 'PONG', 'PUB'])
    expect(ops[1]).toEqual({ op: 'SUB', subject: 'a.*', queue: 'q', sid: '1' })
    const pub = ops[2] as Extract<NatsOp, { op: 'PUB' }>
    expect([pub.subject, pub.reply, pub.headers, pub.payload.toString()]).toEqual(['a.b', null, null, 'hello'])
    const hpub = ops[3] as Extract<NatsOp, { op: 'PUB' }>
    expect([hpub.reply, hpub.headers?.toString(), hpub.payload.toString()]).toEqual(['_INBOX.x', 'NATS/1.0\r\n\r\n', 'hi'])
    expect(ops[4]).toEqual({ op: 'UNSUB', sid: '1', max: 3 })
    expect((ops[7] as Extract<NatsOp, { op: 'PUB' }>).payload.length).toBe(0)
  })

  it('gives the same operations however the input is split into reads', () => {
    const whole = parseAll([STREAM]).ops
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: STREAM.length - 1 }), { maxLength: 12 }), (cuts) => {
      const at = [...new Set(cuts)].sort((a, b) => a - b)
      const chunks: Buffer[] = []
      let prev = 0
      for (const c of [...at, STREAM.length]) { chunks.push(STREAM.subarray(prev, c)); prev = c }
      const { ops, error } = parseAll(chunks)
      expect(error).toBeNull()
      expect(ops).toEqual(whole)
    }))
    // one byte at a time
    expect(parseAll([...STREAM].map((b) => Buffer.from([b]))).ops).toEqual(whole)
  })

  it('refuses a payload over max_payload before reading it', () => {
    expect(parseAll([Buffer.from('PUB a 1025\r\n')]).error).toBe('Maximum Payload Violation')
    expect(parseAll([Buffer.from('HPUB a 10 2000\r\n')]).error).toBe('Maximum Payload Violation')
  })

  it('refuses a control line over the limit, also when it never ends', () => {
    expect(parseAll([Buffer.from(`SUB ${'a'.repeat(5000)} 1\r\n`)]).error).toBe('maximum control line exceeded')
    expect(parseAll([Buffer.from('SUB '), Buffer.alloc(5000, 0x61)]).error).toBe('maximum control line exceeded')
  })

  it('refuses unknown operations and malformed arguments', () => {
    expect(parseAll([Buffer.from('HELLO\r\n')]).error).toBe('Unknown Protocol Operation')
    expect(parseAll([Buffer.from('PUB a b c d\r\n')]).error).toMatch(/Parser Error/)
    expect(parseAll([Buffer.from('PUB a x\r\n')]).error).toMatch(/Parser Error/)
    expect(parseAll([Buffer.from('HPUB a 5 3\r\n')]).error).toMatch(/Parser Error/)
    expect(parseAll([Buffer.from('SUB a\r\n')]).error).toMatch(/Parser Error/)
    expect(parseAll([Buffer.from('PUB a 2\r\nabc\r\n')]).error).toMatch(/CRLF/)
  })

  it('never throws on arbitrary bytes', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
      parseAll(chunks.map((c) => Buffer.from(c)))
    }))
  })

  it('stops when told to and hands back the rest of the read', () => {
    const p = new NatsParser(LIMITS)
    const ops: NatsOp[] = []
    const r = p.feed(Buffer.from('CONNECT {}\r\nPING\r\n'), (op) => { ops.push(op); return false })
    expect(ops.map((o) => o.op)).toEqual(['CONNECT'])
    expect(r.rest?.toString()).toBe('PING\r\n')
  })
})
