import { describe, expect, it } from 'vitest'
import { SubjectRewrite } from '../../src/bridge/subject-rewrite.ts'

describe('SubjectRewrite', () => {
  it('keeps the subject without a template', () => {
    const r = new SubjectRewrite('sensors/#')
    expect(r.apply('sensors/a/b')).toBe('sensors/a/b')
    expect(r.apply('sensors')).toBe('sensors') // '#' matches the parent level [MQTT-4.7.1-2]
    expect(r.apply('other/a')).toBeNull()
  })

  it('puts single-level captures where {1}, {2} stand, also inside a level', () => {
    const r = new SubjectRewrite('sensors/+/+/temp', 'site1/{2}/dev-{1}/temperature')
    expect(r.apply('sensors/a/b/temp')).toBe('site1/b/dev-a/temperature')
    expect(r.apply('sensors/a/temp')).toBeNull()
    expect(r.apply('sensors/a/b/temp/x')).toBeNull()
  })

  it('puts the multi-level tail where {#} or {>} stands, nothing when it matched the parent level', () => {
    expect(new SubjectRewrite('dev/#', 'cloud/{#}/raw').apply('dev/a/b')).toBe('cloud/a/b/raw')
    expect(new SubjectRewrite('dev.>', 'cloud.{>}').apply('dev/a/b')).toBe('cloud/a/b')
    expect(new SubjectRewrite('dev/#', 'cloud/{#}').apply('dev')).toBe('cloud')
  })

  it('reads either syntax on both sides: a NATS-style template is NATS tokens', () => {
    const r = new SubjectRewrite('sensors.*.temp', 'cloud.site1.{1}.temp')
    expect(r.filter).toBe('sensors/+/temp')
    expect(r.apply('sensors/d7/temp')).toBe('cloud/site1/d7/temp')
    // a NATS token with an escaped '.' is one MQTT level with a '.' (docs/subjects.md)
    expect(new SubjectRewrite('a/+', 'x.v%2E1.{1}').apply('a/b')).toBe('x/v.1/b')
  })

  it('does not match $ topics with a leading wildcard [MQTT-4.7.2-1]', () => {
    expect(new SubjectRewrite('#').apply('$SYS/broker/uptime')).toBeNull()
    expect(new SubjectRewrite('+/x').apply('$dlq/x')).toBeNull()
  })

  it('names what is wrong with a template', () => {
    expect(() => new SubjectRewrite('a/+', 'b/{2}')).toThrow(/\{2\}.*has 1/)
    expect(() => new SubjectRewrite('a/+', 'b/{#}')).toThrow(/multi-level wildcard/)
    expect(() => new SubjectRewrite('a/#', 'b/{#}/{#}')).toThrow(/once/)
    expect(() => new SubjectRewrite('a/#', 'b/+')).toThrow(/not a subject level/)
    expect(() => new SubjectRewrite('a/#', 'b.*')).toThrow(/not a subject level/)
    expect(() => new SubjectRewrite('a/#/b')).toThrow()
  })
})
