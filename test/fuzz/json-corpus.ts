import type { Rng } from './harness.ts'

/**
 * Frames of the /ws JSON protocol (docs/ws-protocol.md): valid requests of every op, the same with
 * one field given a hostile value (wrong type, huge, deeply nested, odd Unicode), JSON text with
 * bytes mutated, binary frames and random text.
 */

export interface WsFrame {
  data: Buffer | string
  binary: boolean
  /** Whether the server must answer it with exactly one frame (a pending `next` may wait long). */
  answered: boolean
  /** The server may close the connection on it (invalid UTF-8: 1007, over the frame limit: 1009). */
  mayClose: boolean
}

const GOOD_FILTERS = ['fuzz.>', 'fuzz.*', 'fuzz/#', 'fuzz/+', '>', '#', 'sensors.*.temp', 'fuzz.ü.>', 'health.>'] as const
const BAD_FILTERS = [
  'a.>.b', 'a..b', '*x', '', ' ', '.', 'a/#/b', '$share/g/fuzz/#', 'fuzz.>.', '>x', 'a\u0000b', '\ud800',
  'fuzz/+x', 'a b', '$SYS.>', 'x'.repeat(70_000),
] as const
const GOOD_SUBJECTS = ['fuzz.a', 'fuzz/b/c', 'fuzz.ü.€', 'sensors.kitchen.temp', 'jobs.1', 'fuzz.' + 'x'.repeat(200)] as const
const BAD_SUBJECTS = ['fuzz.*', 'fuzz.>', 'fuzz/#', '', 'a..b', '.a', '$SYS/x', 'a\u0000', '\udc00', 'x'.repeat(70_000)] as const

/** Values that are the wrong type, size or shape for some field. */
function hostile(rng: Rng): unknown {
  switch (rng.int(16)) {
    case 0: return null
    case 1: return rng.pick([true, false])
    case 2: return rng.pick([0, -1, 1, 1.5, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, 60_001, 10_001, Number.MIN_VALUE])
    case 3: return ''
    case 4: return 'x'.repeat(rng.chance(0.9) ? 1000 : rng.pick([65_536, 300_000]))
    case 5: return nested(rng, rng.pick([10, 100, 1000])) // deeper ones are built as text (jsonFrame 'deep')
    case 6: return []
    case 7: return {}
    case 8: return rng.pick(['\ud800', '\udfff\ud800', '\u0000', '\uffff', '😀'.repeat(100), '\u202e', 'ü'])
    case 9: return [1, 2, 3, -1, 0, 1e20, 'x', null]
    case 10: return Array.from({ length: rng.chance(0.9) ? 100 : rng.pick([10_000, 100_000]) }, (_, i) => i + 1)
    case 11: return JSON.parse('{"__proto__":{"polluted":true},"toString":1,"valueOf":"x","op":"ping"}') as unknown
    case 12: return rng.pick(['1', '0', '-1', 'NaN', 'Infinity', '1e99'])
    case 13: return rng.pick(GOOD_FILTERS)
    case 14: return rng.pick(BAD_SUBJECTS)
    default: return rng.pick(['hello', 'sub', 'pub', 'next', 'ack', 'ping', 'unsub', '__proto__', 'constructor', 'toString', 'error', 'msg', 'ok'])
  }
}

/** An array or object nested `depth` levels deep. */
function nested(rng: Rng, depth: number): unknown {
  const arrays = rng.chance(0.5)
  let v: unknown = rng.pick([1, 'x', null])
  for (let i = 0; i < depth; i++) v = arrays ? [v] : { a: v }
  return v
}

function id(rng: Rng): unknown {
  return rng.pick([1, 2, 'a', 'req-7', 0, -1, 1.5, 'ü'])
}

/** A valid request of a random op. */
export function validRequest(rng: Rng): Record<string, unknown> {
  const base: Record<string, unknown> = rng.chance(0.8) ? { id: id(rng) } : {}
  switch (rng.weighted([[10, 'hello'], [8, 'ping'], [20, 'sub'], [8, 'unsub'], [30, 'pub'], [12, 'next'], [12, 'ack']] as const)) {
    case 'hello': return { op: 'hello', ...base, ...(rng.chance(0.5) ? { token: 'abc' } : {}) }
    case 'ping': return { op: 'ping', ...base }
    case 'sub': return { op: 'sub', ...base, filter: rng.pick(GOOD_FILTERS), ...(rng.chance(0.3) ? { qos: rng.int(2) } : {}) }
    case 'unsub': return { op: 'unsub', ...base, sub: String(rng.range(1, 5)) }
    case 'pub': {
      const body = rng.weighted([
        [5, { payload: rng.pick(['21.5', '', 'ü€😀', 'x'.repeat(rng.int(5000))]) }],
        [2, { payload_base64: rng.bytes(rng.int(64)).toString('base64') }],
        [2, { payload: { t: 1, nested: [1, 2, { a: null }] } }],
      ] as const)
      return {
        op: 'pub', ...base, subject: rng.pick(GOOD_SUBJECTS), ...body,
        ...(rng.chance(0.4) ? { qos: rng.int(3) } : {}), ...(rng.chance(0.2) ? { retain: rng.chance(0.5) } : {}),
      }
    }
    case 'next': return { op: 'next', ...base, stream: 'fuzz', consumer: 'workers', batch: rng.range(1, 10), wait: rng.pick([0, 0, 10, 50]) }
    case 'ack': {
      const seqs = (): number[] => Array.from({ length: rng.int(4) }, () => rng.range(1, 500))
      return { op: 'ack', ...base, stream: 'fuzz', consumer: 'workers', ack: seqs(), nak: seqs(), term: seqs() }
    }
  }
}

/** A request with one field changed: a hostile value, a bad subject, a field dropped or added. */
export function mutatedRequest(rng: Rng): Record<string, unknown> {
  const r = validRequest(rng)
  const keys = Object.keys(r)
  const key = rng.pick(keys)
  switch (rng.int(6)) {
    case 0: delete r[key]; break
    case 1: // an own property even for '__proto__' (an assignment would set the prototype instead)
      Object.defineProperty(r, rng.pick(['extra', '__proto__', 'constructor', 'x'.repeat(1000), '']), { value: hostile(rng), enumerable: true, writable: true, configurable: true })
      break
    case 2: if ('filter' in r) r.filter = rng.pick(BAD_FILTERS); else if ('subject' in r) r.subject = rng.pick(BAD_SUBJECTS); else r[key] = hostile(rng); break
    case 3: r.stream = rng.pick(['nope', '', 'fuzz', '../x', 'x'.repeat(300), '__proto__']); r.consumer = rng.pick(['workers', 'nope', '', '__proto__']); break
    default: r[key] = hostile(rng)
  }
  return r
}

/** Mutates the bytes of a text: the result is mostly not JSON, and sometimes not UTF-8. */
function mutateText(rng: Rng, text: string): Buffer {
  const b = Buffer.from(text)
  if (b.length === 0) return rng.bytes(8)
  const i = rng.int(b.length)
  switch (rng.int(5)) {
    case 0: b[i] = (b[i] as number) ^ (1 << rng.int(8)); return b
    case 1: return b.subarray(0, i)
    case 2: return Buffer.concat([b.subarray(0, i), Buffer.from(rng.pick(['"', '{', '}', ',', ':', '\\', '\\u', '[', 'null', '\u0000', '1e999'])), b.subarray(i)])
    case 3: return Buffer.concat([b, b.subarray(i)])
    default: return Buffer.concat([b.subarray(0, i), b.subarray(i + rng.range(1, 8))])
  }
}

function isNext(text: string): boolean {
  try {
    const v = JSON.parse(text) as { op?: unknown }
    return v !== null && typeof v === 'object' && v.op === 'next'
  } catch {
    return false
  }
}

function text(data: string, mayClose = false): WsFrame {
  // a `next` that finds no message waits up to its `wait`: its answer is not awaited
  return { data, binary: false, answered: !isNext(data), mayClose: mayClose || Buffer.byteLength(data) > 1024 * 1024 }
}

/** One frame for /ws. */
export function jsonFrame(rng: Rng): WsFrame {
  switch (rng.weighted([[25, 'valid'], [45, 'mutated'], [12, 'bytes'], [6, 'binary'], [6, 'random'], [3, 'deep'], [3, 'odd']] as const)) {
    case 'valid': return text(JSON.stringify(validRequest(rng)))
    case 'mutated': return text(JSON.stringify(mutatedRequest(rng)))
    case 'bytes': {
      const b = mutateText(rng, JSON.stringify(rng.chance(0.5) ? validRequest(rng) : mutatedRequest(rng)))
      // not UTF-8: the WebSocket layer closes with 1007, before the protocol sees it
      return isUtf8Safe(b) ? text(b.toString('utf8')) : { data: b, binary: false, answered: false, mayClose: true }
    }
    case 'binary': return { data: rng.bytes(rng.int(200)), binary: true, answered: true, mayClose: false }
    case 'random': return text(rng.pick([
      () => rng.bytes(rng.int(100)).toString('latin1'),
      () => String.fromCharCode(...Array.from({ length: rng.int(50) }, () => rng.int(0xd800))),
      () => rng.pick(['', ' ', 'null', '[]', '1', '"op"', 'true', '{}', '{"op":null}', '[{"op":"ping"}]', '{"op":"ping"}{"op":"ping"}']),
    ])())
    case 'deep': {
      // built as text: JSON.stringify on our side would overflow first
      const depth = rng.pick([1000, 10_000, 100_000, 400_000])
      const [open, close] = rng.chance(0.5) ? ['[', ']'] : ['{"a":', '}']
      const where = rng.pick(['payload', 'filter', 'id', 'ack', 'extra'])
      const op = where === 'filter' ? 'sub' : where === 'ack' ? 'ack' : 'pub'
      return text(`{"op":"${op}","subject":"fuzz.deep","stream":"fuzz","consumer":"workers","${where}":${open.repeat(depth)}1${close.repeat(depth)}}`)
    }
    case 'odd': return text(rng.pick([
      '{"op":"pub","subject":"fuzz.a","payload":"x","payload":"y"}',
      '{"op":"sub","filter":"fuzz.>","id":1e400}',
      '{"op":"pub","subject":"fuzz.a","payload_base64":"!!!not base64!!!"}',
      '{"op":"ack","stream":"fuzz","consumer":"workers","ack":[1e308,-0,9007199254740993]}',
      '{"op":"next","stream":"fuzz","consumer":"workers","batch":10000,"wait":0}',
      '\ufeff{"op":"ping"}',
      '{"op":"ping","id":"' + 'x'.repeat(500_000) + '"}',
    ]))
  }
}

function isUtf8Safe(b: Buffer): boolean {
  return Buffer.from(b.toString('utf8')).equals(b)
}
