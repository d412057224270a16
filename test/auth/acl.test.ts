import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ALLOW_ALL, AccessControl, matchesLevels } from '../../src/auth/acl.ts'
import { parseAclConfig, parseAclRules, type AclRule } from '../../src/auth/acl-config.ts'
import { isEdgebusError } from '../../src/core/errors.ts'
import { topicMatchesFilter } from '../../src/subjects/topic.ts'
import { allTopics, filterArb, matching } from './support.ts'

const EXAMPLE = parseAclConfig({
  default: [{ allow: 'pubsub', subject: 'devices/%c/#' }],
  anonymous: [{ allow: 'sub', subject: 'public/#' }],
  users: {
    alice: [{ deny: 'pub', subject: 'alerts.>' }, { allow: 'pubsub', subject: '#' }],
    carol: [{ allow: 'pubsub', subject: 'users/%u/#' }, { allow: 'sub', subject: '%u.inbox' }],
    admin: [{ allow: 'sub', subject: '$SYS/#' }, { allow: 'pubsub', subject: '#' }],
  },
})

/** The reference: first rule for the action whose filter matches, by the spec's matcher; all lists must allow. */
function reference(lists: AclRule[][], topic: string, read: boolean): boolean {
  return lists.every((rules) => {
    const r = rules.find((x) => (read ? x.access !== 'pub' : x.access !== 'sub') && topicMatchesFilter(topic, x.filter))
    return r !== undefined && r.allow
  })
}

const ruleArb = fc.record({
  effect: fc.constantFrom('allow', 'deny'),
  access: fc.constantFrom('pub', 'sub', 'pubsub'),
  subject: filterArb(3),
}).map(({ effect, access, subject }) => ({ [effect]: access, subject: `mqtt:${subject}` }))
const rulesArb = fc.array(ruleArb, { maxLength: 6 })

describe('ACL matching', () => {
  it('matchesLevels agrees with the reference matcher', () => {
    const topics = allTopics(4)
    fc.assert(fc.property(filterArb(4), (filter) => {
      const levels = filter.split('/')
      const wrong = topics.filter((t) => matchesLevels(levels, t) !== topicMatchesFilter(t, filter))
      expect(wrong, filter).toEqual([])
    }), { numRuns: 300 })
  })

  it('publish and receive decisions agree with a first-match reference, with and without a token restriction', () => {
    const topics = allTopics(4)
    fc.assert(fc.property(rulesArb, fc.option(rulesArb, { nil: null }), (raw, rawRestrict) => {
      const rules = parseAclRules(raw, 'r')
      const restrict = rawRestrict === null ? null : parseAclRules(rawRestrict, 't')
      const access = new AccessControl(parseAclConfig({ users: { u: raw } }), { sharedCacheSize: 16, clientCacheSize: 16 }).forClient('u', 'c', restrict)
      const lists = restrict === null ? [rules] : [rules, restrict]
      const wrong = topics.filter((t) => access.canPublish(t) !== reference(lists, t, false) ||
        access.canReceive(t) !== reference(lists, t, true) || access.explain('sub', t).allowed !== reference(lists, t, true))
      expect(wrong).toEqual([])
    }), { numRuns: 150 })
  })

  it('canSubscribe refuses exactly the filters none of whose topics may be received', () => {
    const topics = allTopics(4)
    fc.assert(fc.property(filterArb(3), rulesArb, fc.option(rulesArb, { nil: null }), (filter, raw, rawRestrict) => {
      const acl = new AccessControl(parseAclConfig({ users: { u: raw } }))
      const restrict = rawRestrict === null ? null : parseAclRules(rawRestrict, 't')
      const access = acl.forClient('u', 'c', restrict)
      const expected = matching(filter, topics).some((t) => access.canReceive(t))
      expect(access.canSubscribe(filter), `subscribe ${filter}`).toBe(expected)
    }), { numRuns: 2000 })
  })
})

describe('ACL rules', () => {
  const acl = new AccessControl(EXAMPLE)

  it('first match wins, per action; a deny "pub" leaves receiving alone', () => {
    const alice = acl.forClient('alice', 'a1')
    expect(alice.canPublish('alerts/fire')).toBe(false)
    expect(alice.canPublish('alerts')).toBe(false) // 'alerts.>' is 'alerts/#', which matches the parent
    expect(alice.canReceive('alerts/fire')).toBe(true)
    expect(alice.canPublish('home/lamp')).toBe(true)
    const order = new AccessControl(parseAclConfig({ users: { u: [{ allow: 'pub', subject: 'a/#' }, { deny: 'pub', subject: 'a/b' }] } })).forClient('u', 'c')
    expect(order.canPublish('a/b')).toBe(true) // the allow came first
  })

  it("keeps '$' topics out of leading wildcards [MQTT-4.7.2-1]", () => {
    const alice = acl.forClient('alice', 'a1')
    expect(alice.canPublish('$SYS/broker/uptime')).toBe(false)
    expect(alice.canReceive('$SYS/broker/uptime')).toBe(false)
    expect(alice.canSubscribe('$SYS/#')).toBe(false)
    expect(alice.canSubscribe('#')).toBe(true)
    const admin = acl.forClient('admin', 'x')
    expect(admin.canReceive('$SYS/broker/uptime')).toBe(true)
    expect(admin.canPublish('$SYS/broker/uptime')).toBe(false) // '$SYS/#' is sub only, and '#' misses it
  })

  it('applies default rules after a user\'s own, and only anonymous rules to anonymous clients', () => {
    const bob = acl.forClient('bob', 'bob-dev') // no rules of his own
    expect(bob.canPublish('devices/bob-dev/temp')).toBe(true)
    expect(bob.canPublish('devices/other/temp')).toBe(false) // no rule matches: default deny
    expect(bob.canSubscribe('devices/+/temp')).toBe(true) // devices/bob-dev/temp is deliverable...
    expect(bob.canReceive('devices/other/temp')).toBe(false) // ...but only that
    expect(bob.canSubscribe('other/#')).toBe(false)
    const anon = acl.forClient(null, 'anon-1')
    expect(anon.canSubscribe('public/#')).toBe(true)
    expect(anon.canReceive('public/news')).toBe(true)
    expect(anon.canPublish('public/news')).toBe(false)
    expect(anon.canPublish('devices/anon-1/x')).toBe(false) // default rules are for authenticated users
  })

  it('fills %u and %c per client, in both syntaxes', () => {
    const carol = acl.forClient('carol', 'c-1')
    expect(carol.canPublish('users/carol/notes')).toBe(true)
    expect(carol.canPublish('users/dave/notes')).toBe(false)
    expect(carol.canReceive('carol/inbox')).toBe(true)
    expect(carol.canPublish('devices/c-1/x')).toBe(true) // default, %c
    expect(carol.canPublish('devices/c-2/x')).toBe(false)
  })

  it('never lets a client id or user name widen a rule', () => {
    for (const id of ['+', '#', 'a/b', 'x+', 'y#', 'nul\u0000', '']) {
      const c = acl.forClient('bob', id)
      for (const topic of ['devices/x/y', 'devices/a/b/c', 'devices/a/b', 'devices/x+/1', 'devices/y#/1', 'devices//1']) {
        expect(c.canPublish(topic), `${JSON.stringify(id)} -> ${topic}`).toBe(false)
      }
      expect(c.canSubscribe('devices/#')).toBe(false)
    }
    // a '$' client id in the first level would reach '$' topics that no wildcard rule reaches
    const own = new AccessControl(parseAclConfig({ default: [{ allow: 'pubsub', subject: '%c/#' }] }))
    expect(own.forClient('u', '$SYS').canReceive('$SYS/broker/uptime')).toBe(false)
    expect(own.forClient('u', 'dev1').canReceive('dev1/x')).toBe(true)
    // a '$' value deeper down is an ordinary level
    const deep = new AccessControl(parseAclConfig({ default: [{ allow: 'pub', subject: 'd/%c' }] }))
    expect(deep.forClient('u', '$x').canPublish('d/$x')).toBe(true)
  })

  it('refuses a subscription that a deny rule covers, and judges $share filters by their filter', () => {
    const a = new AccessControl(parseAclConfig({ users: { u: [{ deny: 'sub', subject: 'secret/#' }, { allow: 'sub', subject: '#' }] } })).forClient('u', 'c')
    expect(a.canSubscribe('secret/+')).toBe(false)
    expect(a.canSubscribe('secret/#')).toBe(false)
    expect(a.canSubscribe('secret')).toBe(false)
    expect(a.canSubscribe('#')).toBe(true)
    expect(a.canReceive('secret/x')).toBe(false)
    expect(a.canSubscribe('$share/g/secret/x')).toBe(false)
    expect(a.canSubscribe('$share/g/open/x')).toBe(true)
  })

  it('accepts a subscription some of whose topics are allowed, and decides split cases exactly', () => {
    const u = (rules: unknown[]) => new AccessControl(parseAclConfig({ users: { u: rules } })).forClient('u', 'c')
    const a = u([{ deny: 'sub', subject: 'a/+' }, { allow: 'sub', subject: 'a/#' }])
    expect(a.canSubscribe('a/+')).toBe(false)
    expect(a.canSubscribe('a/#')).toBe(true) // 'a' itself and 'a/x/y'
    const b = u([{ allow: 'sub', subject: 'a' }, { deny: 'sub', subject: '#' }])
    expect(b.canSubscribe('+')).toBe(true)
    expect(b.canSubscribe('+/+')).toBe(false)
    // too big a search for the budget: accepted, and deliveries are still checked
    // no single rule decides 'a/#', the two denies together do
    const split = { users: { u: [{ deny: 'sub', subject: 'a' }, { deny: 'sub', subject: 'a/+/#' }, { allow: 'sub', subject: '#' }] } }
    expect(new AccessControl(parseAclConfig(split)).forClient('u', 'c').canSubscribe('a/#')).toBe(false)
    // too big a search for the budget: accepted, and deliveries are still checked
    const c = new AccessControl(parseAclConfig(split), { subscribeBudget: 1 }).forClient('u', 'c')
    expect(c.canSubscribe('a/#')).toBe(true)
    expect(c.canReceive('a/x')).toBe(false)
  })

  it('gives everyone the shared ALLOW_ALL without an acl section', () => {
    const open = new AccessControl(null)
    expect(open.enabled).toBe(false)
    expect(open.forClient('x', '1')).toBe(ALLOW_ALL)
    expect(open.forClient(null, '2')).toBe(ALLOW_ALL)
    expect(ALLOW_ALL.unrestricted).toBe(true)
    expect(ALLOW_ALL.canPublish('$SYS/x') && ALLOW_ALL.canReceive('a') && ALLOW_ALL.canSubscribe('#')).toBe(true)
    // a token restriction still narrows
    const narrowed = open.forClient('x', '1', parseAclRules([{ allow: 'sub', subject: 'sensors.>' }], 'token.acl'))
    expect(narrowed.unrestricted).toBe(false)
    expect(narrowed.canReceive('sensors/t')).toBe(true)
    expect(narrowed.canReceive('other')).toBe(false)
    expect(narrowed.canPublish('sensors/t')).toBe(false)
  })

  it('intersects a token restriction with the user rules', () => {
    const restrict = parseAclRules([{ allow: 'sub', subject: 'sensors/#' }, { allow: 'pub', subject: 'alerts/#' }], 'token.acl')
    const alice = acl.forClient('alice', 'a1', restrict)
    expect(alice.canReceive('sensors/t')).toBe(true)
    expect(alice.canReceive('home/t')).toBe(false) // alice may, the token may not
    expect(alice.canPublish('alerts/x')).toBe(false) // the token may, alice may not
    expect(alice.canSubscribe('sensors/#')).toBe(true)
    expect(alice.canSubscribe('home/#')).toBe(false)
    expect(acl.forClient('alice', 'a2', restrict)).not.toBe(alice)
  })

  it('shares one compiled rule set per user unless %c or a token makes it per client', () => {
    const plain = new AccessControl(parseAclConfig({ default: [{ allow: 'sub', subject: 'users/%u/#' }], users: { alice: [{ allow: 'pub', subject: 'x' }] } }))
    expect(plain.forClient('alice', '1')).toBe(plain.forClient('alice', '2'))
    expect(plain.forClient('bob', '1')).toBe(plain.forClient('bob', '2'))
    expect(plain.forClient('bob', '1')).not.toBe(plain.forClient('alice', '1'))
    expect(acl.forClient(null, '1')).toBe(acl.forClient(null, '2'))
    expect(acl.forClient('alice', '1')).not.toBe(acl.forClient('alice', '2')) // the default rules use %c
  })

  it('answers the same through a tiny cache and for long uncached topics', () => {
    const small = new AccessControl(EXAMPLE, { sharedCacheSize: 2, clientCacheSize: 2, maxCachedTopicLength: 8 })
    const alice = small.forClient('alice', 'a')
    const topics = ['alerts/x', 'a', 'b', 'alerts/y', 'c/d', 'alerts/' + 'z'.repeat(50), '$SYS/x']
    for (let round = 0; round < 3; round++) {
      for (const t of topics) {
        const expected = acl.forClient('alice', 'a').explain('pub', t).allowed
        expect(alice.canPublish(t)).toBe(expected)
        expect(alice.canReceive(t)).toBe(acl.forClient('alice', 'a').explain('sub', t).allowed)
      }
    }
  })

  it('names the deciding rule in EACL_DENIED errors', () => {
    const alice = acl.forClient('alice', 'a1')
    expect(alice.explain('pub', 'alerts/x')).toEqual({ allowed: false, rule: 'auth.acl.users.alice[0]' })
    expect(alice.explain('pub', 'home/x')).toEqual({ allowed: true, rule: 'auth.acl.users.alice[1]' })
    const err = alice.denied('pub', 'alerts/x')
    expect(isEdgebusError(err, 'EACL_DENIED')).toBe(true)
    expect(err.message).toContain('auth.acl.users.alice[0]')
    const none = acl.forClient('bob', 'b').denied('sub', 'x/y')
    expect(none.message).toMatch(/no ACL rule allows it.*auth\.acl\.users\.bob/)
    expect(acl.forClient(null, 'z').denied('subscribe', 'x/#').message).toContain('auth.acl.anonymous')
  })
})
