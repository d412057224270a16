import { createHmac } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { signToken, verifyToken } from '../../src/auth/token.ts'
import { EdgebusError } from '../../src/core/errors.ts'

const SECRET = 'a-secret-of-at-least-thirty-two-characters!'
const NOW = Date.UTC(2030, 0, 1)
const exp = NOW / 1000 + 3600

function code(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof EdgebusError) return err.code
    throw err
  }
  return 'no error'
}

const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')
/** A token signed over whatever header and payload, as a forger with (or without) the secret would make it. */
function forge(header: unknown, payload: unknown, secret = SECRET): string {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}

describe('access tokens (JWT, HS256)', () => {
  it('signs and verifies, keeping extra claims', () => {
    const token = signToken({ sub: 'alice', exp, acl: [{ allow: 'sub', subject: 'a/#' }] }, SECRET)
    expect(token.split('.')).toHaveLength(3)
    const claims = verifyToken(token, SECRET, NOW)
    expect(claims).toMatchObject({ sub: 'alice', exp, acl: [{ allow: 'sub', subject: 'a/#' }] })
    // the header is the standard one, so other tools read it
    expect(JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString())).toEqual({ alg: 'HS256', typ: 'JWT' })
  })

  it('verifies a token minted elsewhere (any header field order, extra claims)', () => {
    const token = forge({ typ: 'JWT', alg: 'HS256', kid: 'k1' }, { iss: 'x', sub: 'bob', exp, iat: exp - 60 })
    expect(verifyToken(token, SECRET, NOW).sub).toBe('bob')
  })

  it('refuses expired and not-yet-valid tokens', () => {
    const token = signToken({ sub: 'alice', exp }, SECRET)
    expect(code(() => verifyToken(token, SECRET, exp * 1000))).toBe('EAUTH_TOKEN_EXPIRED')
    expect(code(() => verifyToken(token, SECRET, exp * 1000 - 1))).toBe('no error')
    expect(code(() => verifyToken(signToken({ sub: 'a', exp, nbf: exp - 10 }, SECRET), SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID')
    expect(code(() => verifyToken(signToken({ sub: 'a', exp: 1e300, nbf: 1e300 }, SECRET), SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID')
  })

  it('refuses tampering, a wrong secret, and alg none or other algorithms', () => {
    const token = signToken({ sub: 'alice', exp }, SECRET)
    const [h, p, s] = token.split('.') as [string, string, string]
    const other = b64({ sub: 'admin', exp })
    expect(code(() => verifyToken(`${h}.${other}.${s}`, SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID')
    expect(code(() => verifyToken(`${h}.${p}.${s.slice(0, -2)}AA`, SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID')
    expect(code(() => verifyToken(token, SECRET + '!', NOW))).toBe('EAUTH_TOKEN_INVALID')
    // alg none: no signature, or an empty one
    expect(code(() => verifyToken(`${b64({ alg: 'none' })}.${other}.`, SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID')
    expect(code(() => verifyToken(forge({ alg: 'none' }, { sub: 'admin', exp }), SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID')
    expect(code(() => verifyToken(forge({ alg: 'HS512' }, { sub: 'admin', exp }), SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID')
    expect(code(() => verifyToken(forge({ alg: 'HS256', crit: ['exp'] }, { sub: 'admin', exp }), SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID')
  })

  it('refuses malformed tokens and claims', () => {
    for (const bad of ['', 'abc', 'a.b', 'a.b.c.d', 'a..c', 'a b.c.d', 'x'.repeat(9000)]) {
      expect(code(() => verifyToken(bad, SECRET, NOW)), bad.slice(0, 20)).toBe('EAUTH_TOKEN_INVALID')
    }
    expect(code(() => verifyToken(forge('not json', { sub: 'a', exp }), SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID')
    expect(code(() => verifyToken(forge({ alg: 'HS256' }, [1, 2]), SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID')
    expect(code(() => verifyToken(forge({ alg: 'HS256' }, { exp }), SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID') // no sub
    expect(code(() => verifyToken(forge({ alg: 'HS256' }, { sub: 'a' }), SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID') // no exp
    expect(code(() => verifyToken(forge({ alg: 'HS256' }, { sub: 'a', exp: '9999999999' }), SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID')
    expect(code(() => verifyToken(forge({ alg: 'HS256' }, { sub: '', exp }), SECRET, NOW))).toBe('EAUTH_TOKEN_INVALID')
  })

  it('says what is wrong and what to do', () => {
    expect(() => verifyToken(forge({ alg: 'none' }, { sub: 'a', exp }), SECRET, NOW)).toThrow(/algorithm is "none"; only HS256 is accepted.*auth\.tokenSecret/)
    expect(() => verifyToken(signToken({ sub: 'a', exp }, SECRET), SECRET, exp * 1000)).toThrow(/expired at 2030-01-01T01:00:00.000Z; get a new one/)
  })
})
