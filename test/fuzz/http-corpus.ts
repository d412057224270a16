import type { Rng } from './harness.ts'
import { mutateOnce } from './mutate.ts'

/**
 * Requests for the HTTP API (src/http): random and mutated paths and query strings, methods,
 * headers (huge ones, Content-Length lies), bodies (invalid JSON, deep nesting, huge), and raw
 * malformed HTTP. Each carries what a correct server must do with it.
 */

export interface HttpInput {
  raw: Buffer
  label: string
  /**
   * 'answer': a complete, well-formed request: the server must answer it with a status line.
   * 'maybe': the server may answer or just close (malformed bytes, a body short of its length).
   */
  expect: 'answer' | 'maybe'
  /** A response that does not end by itself (SSE follow, a long `next`): closed after its status line. */
  holdOpen: boolean
  /** Send FIN after the bytes: the server waits for more otherwise (a body short of its Content-Length). */
  halfClose: boolean
}

const STREAMS = ['fuzz', 'fuzz', 'nope', 'f1', 'f2', '%', '%zz', '%E0%A4%A', '..', '.', 'x'.repeat(300), '__proto__', 'constructor', '%C3%BC', '%00', 'a%2Fb', '%2e%2e'] as const
const CONSUMERS = ['workers', 'workers', 'c1', 'c2', 'nope', '%zz', '__proto__', '', '%FF'] as const
const SUBJECTS = ['fuzz.a', 'fuzz/b/c', 'fuzz%2Fx', 'fuzz.%C3%BC', 'fuzz.*', 'fuzz/%23', '%zz', '', '%00', 'a..b', '$SYS/x', 'x'.repeat(5000), 'fuzz.' + '%FF'] as const
const NUMBERS = ['-1', '0', '1', '5', '1e99', 'NaN', '', 'abc', '9007199254740993', '99999999999999999999', '0x10', ' 1', '1.5', 'Infinity', '-0'] as const

function q(rng: Rng, pairs: ReadonlyArray<readonly [string, readonly string[]]>): string {
  const parts = pairs.filter(() => rng.chance(0.5)).map(([k, vs]) => `${k}=${rng.pick(vs)}`)
  if (rng.chance(0.1)) parts.push(rng.pick(['%zz', '&&&', '=', 'a=%', 'from_seq=1&from_seq=2', '%00=%00']))
  return parts.length > 0 ? '?' + parts.join('&') : ''
}

interface Target { method: string; path: string; body: 'none' | 'stream' | 'consumer' | 'ack' | 'payload'; holdOpen: boolean }

function target(rng: Rng): Target {
  const s = rng.pick(STREAMS)
  const c = rng.pick(CONSUMERS)
  const m = (...ms: string[]): string => rng.chance(0.85) ? rng.pick(ms) : rng.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'])
  switch (rng.int(14)) {
    case 0: return { method: m('GET', 'POST'), path: '/api/streams', body: 'stream', holdOpen: false }
    case 1: return { method: m('GET', 'PUT', 'DELETE'), path: `/api/streams/${s}`, body: 'stream', holdOpen: false }
    case 2: return { method: m('POST'), path: `/api/streams/${s}/purge`, body: 'none', holdOpen: false }
    case 3: {
      const query = q(rng, [['from_seq', NUMBERS], ['from_time', ['garbage', '0', '2024-01-01T00:00:00Z', '-1', '1e99', '99999999999999999999', '', '2024-13-45']],
        ['last', NUMBERS], ['limit', NUMBERS], ['filter', ['fuzz.>', 'fuzz/%23', '%23/a', 'a/%23/b', '', '%24share/g/x', '%zz', 'fuzz.*']], ['follow', ['1', 'true', '0', '']]])
      return { method: m('GET'), path: `/api/streams/${s}/messages${query}`, body: 'none', holdOpen: /follow=(1|true)(&|$)/.test(query) }
    }
    case 4: return { method: m('GET', 'POST'), path: `/api/streams/${s}/consumers`, body: 'consumer', holdOpen: false }
    case 5: return { method: m('GET', 'DELETE'), path: `/api/streams/${s}/consumers/${c}`, body: 'none', holdOpen: false }
    case 6: {
      const query = q(rng, [['batch', NUMBERS], ['wait', ['0', '10', '-1', 'NaN', 'abc', '100']], ['client', ['a', '', 'x'.repeat(500), '%zz']]])
      return { method: m('POST'), path: `/api/streams/${s}/consumers/${c}/next${query}`, body: 'none', holdOpen: false }
    }
    case 7: return { method: m('POST'), path: `/api/streams/${s}/consumers/${c}/ack`, body: 'ack', holdOpen: false }
    case 8: return { method: m('POST'), path: `/api/streams/${s}/${rng.pick(['x', 'consumers/a/b/c', '', 'messages/1', 'purge/x'])}`, body: 'none', holdOpen: false }
    case 9: case 10: {
      const query = q(rng, [['qos', ['0', '1', '2', '3', '-1', 'x', '']], ['retain', ['1', 'true', '0', 'yes']]])
      return { method: m('POST'), path: `/api/publish/${rng.pick(SUBJECTS)}${query}`, body: 'payload', holdOpen: false }
    }
    case 11: return { method: m('GET'), path: rng.pick(['/api/stats', '/api/connections', '/healthz', '/', '/client.js', '/api', '/api/', '/api/publish', '/api/publish/']), body: 'none', holdOpen: false }
    case 12: return { method: m('GET'), path: rng.pick(['/mqtt', '/ws', '/nope', '//', '/%zz', '/api/streams/../stats', '/' + 'a/'.repeat(2000), '/?' + 'a'.repeat(5000)]), body: 'none', holdOpen: false }
    default: return { method: rng.pick(['get', 'FOO', 'M-SEARCH', 'TRACE', 'PROPFIND', 'PURGE']), path: rng.pick(['/api/streams', '/healthz', `/api/streams/${s}`]), body: 'none', holdOpen: false }
  }
}

/** A value of the wrong type, size or shape, as JSON text. */
function hostileJson(rng: Rng): string {
  return rng.pick([
    'null', 'true', '-1', '0', '1e308', '""', '"x"', '[]', '{}', '"' + 'x'.repeat(rng.pick([100, 100_000])) + '"',
    '[' .repeat(2000) + ']'.repeat(2000), '{"a":'.repeat(2000) + '1' + '}'.repeat(2000),
    '[' .repeat(20_000) + ']'.repeat(20_000), '["a.>", 1, null]', '["\\ud800"]', '"\\u0000"', '"1s"', '"-5m"', '"9999999d"',
    '{"startSeq":-1}', '{"startTime":"x"}', '{"__proto__":{"x":1}}',
  ])
}

/** A JSON object: valid for its endpoint, or with one value made hostile, a key added, or cut short. */
function jsonBody(rng: Rng, kind: 'stream' | 'consumer' | 'ack'): string {
  const fields: Array<[string, string]> = kind === 'stream'
    ? [['name', JSON.stringify(rng.pick(['f1', 'f2', 'fuzz', 'nope', '']))], ['subjects', JSON.stringify([rng.pick(['f1.>', 'f2/#', 'fuzz.>', 'f1.a', '>'])])],
      ['maxMsgs', rng.pick(['10', '0', '-1'])], ['maxAge', rng.pick(['"1h"', '"0s"', '1000'])], ['fsync', rng.pick(['"batch"', '"always"', '"never"', '"x"'])]]
    : kind === 'consumer'
      ? [['name', JSON.stringify(rng.pick(['c1', 'c2', 'workers', '', 'x'.repeat(65)]))], ['filter', JSON.stringify([rng.pick(['fuzz.>', 'fuzz/a', 'other.>'])])],
        ['deliver', rng.pick(['"all"', '"new"', '"last"', '"lastPerSubject"', '{"startSeq":1}', '{"startTime":0}'])], ['ackWait', rng.pick(['"1s"', '"30s"', '100'])],
        ['maxDeliver', rng.pick(['1', '5', '0'])], ['backoff', rng.pick(['["1s","10s"]', '[]'])], ['maxAckPending', '10'], ['replay', rng.pick(['"instant"', '"original"'])]]
      : [['ack', JSON.stringify([rng.range(1, 100)])], ['nak', '[]'], ['term', JSON.stringify([rng.range(1, 100)])]]
  const kept = fields.filter(() => rng.chance(0.7))
  const r = rng.int(10)
  if (r < 4 && kept.length > 0) { const i = rng.int(kept.length); kept[i] = [(kept[i] as [string, string])[0], hostileJson(rng)] }
  else if (r === 4) kept.push([rng.pick(['extra', '__proto__', 'constructor', '']), hostileJson(rng)])
  const text = '{' + kept.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',') + '}'
  if (r === 5) return text.slice(0, rng.int(text.length)) // cut short: not JSON
  if (r === 6) return rng.pick(['', ' ', 'null', '[]', '"x"', '1', 'not json', '{"a":1}{"b":2}', '\ufeff{}'])
  return text
}

function request(method: string, path: string, headers: Array<[string, string]>, body: Buffer): Buffer {
  const head = `${method} ${path} HTTP/1.1\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`
  return Buffer.concat([Buffer.from(head, 'latin1'), body])
}

/** One input for the HTTP listener. */
export function httpInput(rng: Rng): HttpInput {
  const kind = rng.weighted([[70, 'request'], [10, 'headers'], [8, 'mutated'], [6, 'raw'], [3, 'pipelined'], [3, 'upgrade']] as const)
  if (kind === 'raw') return { raw: rawJunk(rng), label: 'http raw', expect: 'maybe', holdOpen: false, halfClose: true }
  if (kind === 'upgrade') {
    const path = rng.pick(['/ws', '/mqtt', '/nope', '/ws?x=1'])
    const headers: Array<[string, string]> = [['Host', 'x'], ['Connection', 'Upgrade'], ['Upgrade', rng.pick(['websocket', 'h2c', 'x'])]]
    if (rng.chance(0.7)) headers.push(['Sec-WebSocket-Version', rng.pick(['13', '8', 'x', ''])])
    if (rng.chance(0.7)) headers.push(['Sec-WebSocket-Key', rng.pick(['dGhlIHNhbXBsZSBub25jZQ==', 'short', '', 'x'.repeat(100)])])
    if (rng.chance(0.5)) headers.push(['Sec-WebSocket-Protocol', rng.pick(['mqtt', 'mqttv3.1', 'x', ',,,', 'mqtt, mqtt'])])
    // a successful upgrade answers 101 and then speaks WebSocket: close after the status line
    return { raw: request('GET', path, headers, Buffer.alloc(0)), label: `http upgrade ${path}`, expect: 'maybe', holdOpen: true, halfClose: false }
  }

  const t = target(rng)
  let body: Buffer = Buffer.alloc(0)
  if (t.method !== 'GET' && t.method !== 'HEAD' && t.method !== 'DELETE' && rng.chance(0.9)) {
    if (t.body === 'payload') body = rng.chance(0.99) ? rng.bytes(rng.size(200, 4000)) : Buffer.alloc(1024 * 1024 + 10, 0x61)
    else if (t.body !== 'none') body = Buffer.from(rng.chance(0.99) ? jsonBody(rng, t.body) : '"' + 'x'.repeat(1024 * 1024 + 10) + '"')
  }
  const headers: Array<[string, string]> = [['Host', '127.0.0.1'], ['Connection', 'close']]
  if (body.length > 0 || rng.chance(0.1)) headers.push(['Content-Type', rng.pick(['application/json', 'text/plain', 'application/octet-stream', '', 'x'.repeat(300), 'application/json; charset=latin1'])])
  if (rng.chance(0.1)) headers.push(['Msg-Id', rng.pick(['m-1', '', 'x'.repeat(2000), 'ü'])])
  if (rng.chance(0.1)) headers.push(['Last-Event-ID', rng.pick(['1', '-1', 'abc', '99999999999999999999', ''])])
  let expect: HttpInput['expect'] = body.length > 1024 * 1024 ? 'maybe' : 'answer' // a 413 may race our writes
  let halfClose = false
  let label = `http ${t.method} ${t.path.slice(0, 120)}`
  if (kind === 'headers') {
    switch (rng.int(7)) {
      case 0: headers.push(['X-Huge', 'x'.repeat(rng.pick([9000, 20_000, 70_000]))]); label += ' huge header'; break
      case 1: for (let i = 0; i < rng.pick([100, 2500]); i++) headers.push([`X-H${i}`, 'v']); label += ' many headers'; break
      case 2: // declares more than it sends: the server waits for the rest, then sees our FIN
        headers.push(['Content-Length', String(body.length + rng.range(1, 1000))]); expect = 'maybe'; halfClose = true; label += ' Content-Length too big'; break
      case 3: // declares less: the rest is read as the next request
        headers.push(['Content-Length', String(Math.max(0, body.length - rng.range(1, 10)))]); expect = 'maybe'; label += ' Content-Length too small'; break
      case 4: headers.push(['Content-Length', rng.pick(['-1', 'abc', '1, 2', '99999999999999999999', ''])]); expect = 'maybe'; label += ' bad Content-Length'; break
      case 5: headers.push(['Transfer-Encoding', 'chunked'], ['Content-Length', String(body.length)]); expect = 'maybe'; label += ' CL+TE'; break
      default: { // a chunked body, sometimes with broken chunk sizes
        headers.push(['Transfer-Encoding', rng.pick(['chunked', 'chunked', 'gzip, chunked', 'identity'])])
        const bad = rng.chance(0.4)
        body = Buffer.concat([Buffer.from(`${bad ? rng.pick(['zz', '-1', 'ffffffffffffffff', '']) : body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')])
        expect = 'maybe'; halfClose = bad; label += ' chunked'; break
      }
    }
  } else if (body.length > 0 || t.method === 'POST' || t.method === 'PUT') {
    headers.push(['Content-Length', String(body.length)])
  }
  const raw = request(t.method, t.path, headers, body)
  if (kind === 'mutated') return { raw: mutateOnce(rng, raw, () => request('GET', '/healthz', [['Host', 'x']], Buffer.alloc(0))), label: label + ' (bytes mutated)', expect: 'maybe', holdOpen: t.holdOpen, halfClose: true }
  if (kind === 'pipelined') {
    // the first request keeps the connection open for a second one, and maybe junk after it
    const first = Buffer.from(raw.toString('latin1').replace('Connection: close\r\n', ''), 'latin1')
    const second = request('GET', rng.pick(['/healthz', '/api/streams', '/api/stats']), [['Host', 'x']], Buffer.alloc(0))
    return { raw: Buffer.concat([first, second, rng.chance(0.5) ? rawJunk(rng) : Buffer.alloc(0)]), label: label + ' + pipelined', expect: 'maybe', holdOpen: false, halfClose: true }
  }
  return { raw, label, expect, holdOpen: t.holdOpen, halfClose }
}

/** Bytes that are not quite HTTP. */
function rawJunk(rng: Rng): Buffer {
  return Buffer.from(rng.pick([
    () => rng.bytes(rng.range(1, 300)).toString('latin1'),
    () => 'GET /\r\n\r\n',
    () => 'GET / HTTP/9.9\r\nHost: x\r\n\r\n',
    () => 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    () => 'GET /healthz HTTP/1.1\nHost: x\n\n',
    () => 'GET /healthz HTTP/1.1\r\nHost x\r\n\r\n',
    () => 'GET http://x/api/stats HTTP/1.1\r\nHost: x\r\n\r\n',
    () => 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n',
    () => `GET /${'a'.repeat(rng.pick([100, 20_000, 90_000]))} HTTP/1.1\r\nHost: x\r\n\r\n`,
    () => 'GET /api/streams HTTP/1.1\r\nHost: x\r\n Folded: yes\r\n\r\n',
    () => 'POST /api/publish/fuzz.a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
    () => 'GET /api/streams HTTP/1.1\r\nHost: x\r\nX: \u0000\u0001\r\n\r\n',
    () => 'GET /api/str\u0000eams HTTP/1.1\r\nHost: x\r\n\r\n',
    () => 'G\u00c9T / HTTP/1.1\r\n\r\n',
    () => 'GET /healthz HTTP/1.1\r\nHost: x\r\n',
    () => '\r\n\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n',
    // a proxy request: answered 405 (test/http/api.test.ts), here among the maybes for the mutations around it
    () => 'CONNECT 127.0.0.1:1883 HTTP/1.1\r\nHost: 127.0.0.1:1883\r\n\r\n',
  ])(), 'latin1')
}
