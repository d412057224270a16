import { describe, expect, it } from 'vitest'
import { OPEN_AUTH, parseAuthConfig, ruleFilter } from '../../src/auth/acl-config.ts'
import { EdgebusError } from '../../src/core/errors.ts'

function failure(fn: () => unknown): EdgebusError {
  try {
    fn()
  } catch (err) {
    if (err instanceof EdgebusError) return err
    throw err
  }
  throw new Error('expected an EdgebusError')
}

const SECRET = 'x'.repeat(32)

describe('parseAuthConfig', () => {
  it('reads the documented example', () => {
    const auth = parseAuthConfig({
      passwordFile: 'passwd',
      tokenSecret: SECRET,
      acl: {
        default: [{ allow: 'pubsub', subject: 'devices/%c/#' }],
        anonymous: [{ allow: 'sub', subject: 'public/#' }],
        users: { alice: [{ deny: 'pub', subject: 'alerts.>' }, { allow: 'pubsub', subject: '#' }] },
      },
    })
    expect(auth.passwordFile).toBe('passwd')
    expect(auth.allowAnonymous).toBe(false)
    expect(auth.acl?.default).toEqual([{ allow: true, access: 'pubsub', filter: 'devices/%c/#', where: 'auth.acl.default[0]' }])
    expect(auth.acl?.users.alice?.[0]).toEqual({ allow: false, access: 'pub', filter: 'alerts/#', where: 'auth.acl.users.alice[0]' })
    expect(Object.getPrototypeOf(auth.acl?.users)).toBe(null) // a user named "constructor" or "__proto__" is just a user
  })

  it('is open without a section, and anonymous stays allowed only while no users exist', () => {
    expect(parseAuthConfig(undefined)).toBe(OPEN_AUTH)
    expect(parseAuthConfig({}).allowAnonymous).toBe(true)
    expect(parseAuthConfig({ acl: { anonymous: [] } }).allowAnonymous).toBe(true)
    expect(parseAuthConfig({ passwordFile: 'p' }).allowAnonymous).toBe(false)
    expect(parseAuthConfig({ tokenSecret: SECRET }).allowAnonymous).toBe(false)
    expect(parseAuthConfig({ acl: { users: { a: [] } } }).allowAnonymous).toBe(false)
    expect(parseAuthConfig({ passwordFile: 'p', allowAnonymous: true }).allowAnonymous).toBe(true)
    expect(parseAuthConfig({}).acl).toBe(null)
  })

  it('names the exact key path and the fix', () => {
    const bad = failure(() => parseAuthConfig({ acl: { users: { alice: [{ allow: 'sub', subject: 'a' }, { allow: 'sub', subject: 'b' }, { allow: 'sub', subject: 'a/#/b' }] } } }))
    expect(bad.code).toBe('EACL_INVALID')
    expect(bad.message).toContain('auth.acl.users.alice[2].subject "a/#/b"')
    expect(bad.message).toContain("'#' must be the last level")
    expect(bad.detail.key).toBe('auth.acl.users.alice[2].subject')

    const access = failure(() => parseAuthConfig({ acl: { default: [{ allow: 'read', subject: 'a' }] } }))
    expect(access.message).toMatch(/auth\.acl\.default\[0\]\.allow "read" is not valid; use "pub".*"sub".*"pubsub"/)
    expect(failure(() => parseAuthConfig({ acl: { default: [{ allow: 'sub', deny: 'pub', subject: 'a' }] } })).message).toContain('exactly one of "allow" or "deny"')
    expect(failure(() => parseAuthConfig({ acl: { default: [{ allow: 'sub' }] } })).message).toContain('auth.acl.default[0].subject')
    expect(failure(() => parseAuthConfig({ acl: { default: [{ allow: 'sub', subject: 'a', qos: 1 }] } })).message).toContain('auth.acl.default[0].qos')
    expect(failure(() => parseAuthConfig({ acl: { users: { 'a.b': [{ allow: 'sub', subject: 'a/+x' }] } } })).message).toContain('auth.acl.users["a.b"][0].subject')
    expect(failure(() => parseAuthConfig({ acl: { default: { allow: 'sub' } } })).message).toContain('auth.acl.default must be a list of rules')
    expect(failure(() => parseAuthConfig({ acl: [] })).code).toBe('EACL_INVALID')
    expect(failure(() => parseAuthConfig({ acl: { user: {} } })).code).toBe('ECONFIG_UNKNOWN_KEY')
    const unknown = failure(() => parseAuthConfig({ passwordfile: 'x' }))
    expect(unknown.code).toBe('ECONFIG_UNKNOWN_KEY')
    expect(unknown.message).toContain('passwordFile')
    expect(failure(() => parseAuthConfig({ allowAnonymous: 'yes' })).message).toContain('auth.allowAnonymous: "yes" is not valid; use true or false')
    expect(failure(() => parseAuthConfig({ passwordFile: '' })).code).toBe('ECONFIG_INVALID')
    expect(failure(() => parseAuthConfig('open')).code).toBe('ECONFIG_INVALID')
  })

  it('refuses a short token secret without echoing it', () => {
    const err = failure(() => parseAuthConfig({ tokenSecret: 'hunter2' }))
    expect(err.code).toBe('ECONFIG_INVALID')
    expect(err.message).toContain('at least 32 characters')
    expect(err.message).not.toContain('hunter2')
    expect(JSON.stringify(err.detail)).not.toContain('hunter2')
  })
})

describe('rule subjects', () => {
  it('reads both syntaxes and keeps %u / %c as whole levels', () => {
    expect(ruleFilter('devices/%c/#')).toBe('devices/%c/#')
    expect(ruleFilter('devices.%c.>')).toBe('devices/%c/#')
    expect(ruleFilter('%u.inbox')).toBe('%u/inbox')
    expect(ruleFilter('alerts.*')).toBe('alerts/+')
    expect(ruleFilter('fw.v1%2E2.%u')).toBe('fw/v1.2/%u')
    expect(ruleFilter('nats:a/b.%c')).toBe('a%2Fb/%c')
    expect(ruleFilter('mqtt:solo')).toBe('solo')
    expect(ruleFilter('$SYS/#')).toBe('$SYS/#')
    expect(ruleFilter('#')).toBe('#')
  })

  it('refuses a placeholder inside a level and malformed subjects', () => {
    expect(() => ruleFilter('devices/dev-%c/#')).toThrow(/whole level/)
    expect(() => ruleFilter('devices.%cx')).toThrow(/whole level/)
    expect(() => ruleFilter('a.>.b')).toThrow()
    expect(() => ruleFilter('')).toThrow()
    // a literal '%u' in a level is written in NATS style, where '%25' is '%'
    expect(ruleFilter('rate.100%25used')).toBe('rate/100%used')
  })
})
