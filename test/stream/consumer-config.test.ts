import { describe, expect, it } from 'vitest'
import { isEdgebusError } from '../../src/core/errors.ts'
import { checkConsumerFilter, defaultDeadLetter, describeConsumerDefinition, parseConsumerDefinition } from '../../src/stream/consumer-config.ts'
import { parseStreamDefinition } from '../../src/stream/stream-config.ts'

function codeOf(fn: () => unknown): string | null {
  try { fn(); return null } catch (err) { return isEdgebusError(err) ? `${err.code}: ${err.message}` : `OTHER ${String(err)}` }
}

describe('consumer definitions', () => {
  it('defaults: explicit acks, 30 s ack wait, 5 deliveries, 1000 pending, everything from the start', () => {
    const def = parseConsumerDefinition({ name: 'billing' }, 'telemetry')
    expect(def).toEqual({
      name: 'billing', stream: 'telemetry', filter: [], deliver: 'all', ack: 'explicit', ackWait: 30_000, maxDeliver: 5,
      backoff: [], maxAckPending: 1000, replay: 'instant', deadLetter: null,
    })
    expect(defaultDeadLetter('telemetry', 'billing')).toBe('$dlq/telemetry/billing')
  })

  it('reads filters in either syntax, durations as people write them, and "no limit" as 0 or -1', () => {
    const def = parseConsumerDefinition({
      name: 'c', filter: ['sensors.kitchen.*', 'meters/+/kwh', 'sensors.kitchen.*'], deliver: 'lastPerSubject', ackWait: '90s',
      maxDeliver: -1, backoff: ['1s', '10s', 60_000], maxAckPending: 0, replay: 'original', deadLetter: 'dead.letters.c', ack: 'explicit',
    }, 's')
    expect(def.filter).toEqual(['sensors/kitchen/+', 'meters/+/kwh'])
    expect(def).toMatchObject({ deliver: 'lastPerSubject', ackWait: 90_000, maxDeliver: 0, backoff: [1000, 10_000, 60_000], maxAckPending: 0, replay: 'original', deadLetter: 'dead/letters/c' })
    expect(parseConsumerDefinition({ filter: 'a.>' }, 's').filter).toEqual(['a/#'])
    expect(parseConsumerDefinition({}, 's').name).toBeNull()
  })

  it('deliver: every policy, a start sequence, a start time in ISO 8601 or ms', () => {
    for (const d of ['all', 'new', 'last', 'lastPerSubject']) expect(parseConsumerDefinition({ deliver: d }, 's').deliver).toBe(d)
    expect(parseConsumerDefinition({ deliver: { startSeq: 42 } }, 's').deliver).toEqual({ startSeq: 42 })
    expect(parseConsumerDefinition({ deliver: { startTime: '2026-11-23T00:00:00Z' } }, 's').deliver).toEqual({ startTime: Date.parse('2026-11-23T00:00:00Z') })
    expect(parseConsumerDefinition({ deliver: { startTime: 1_700_000_000_000 } }, 's').deliver).toEqual({ startTime: 1_700_000_000_000 })
    const described = describeConsumerDefinition(parseConsumerDefinition({ name: 'x', deliver: { startTime: 0 } }, 's'))
    expect(described.deliver).toEqual({ startTime: '1970-01-01T00:00:00.000Z' })
    expect(parseConsumerDefinition(described, 's')).toEqual(parseConsumerDefinition({ name: 'x', deliver: { startTime: 0 } }, 's'))
  })

  it('names the setting, the value and the fix', () => {
    expect(codeOf(() => parseConsumerDefinition({ name: 'a.b' }, 's'))).toMatch(/ECONSUMER_INVALID: .*name "a.b"/)
    expect(codeOf(() => parseConsumerDefinition({ name: 'c', filter: ['a.>.b'] }, 's'))).toMatch(/ECONSUMER_INVALID: consumer "c" of stream "s": filter "a.>.b"/)
    expect(codeOf(() => parseConsumerDefinition({ deliver: 'first' }, 's'))).toMatch(/deliver "first".*lastPerSubject/)
    expect(codeOf(() => parseConsumerDefinition({ deliver: { startSeq: 0 } }, 's'))).toMatch(/startSeq must be a whole number/)
    expect(codeOf(() => parseConsumerDefinition({ deliver: { startTime: 'yesterday' } }, 's'))).toMatch(/startTime must be/)
    expect(codeOf(() => parseConsumerDefinition({ ack: 'all' }, 's'))).toMatch(/ack "all".*explicit, none/)
    expect(codeOf(() => parseConsumerDefinition({ ackWait: '0s' }, 's'))).toMatch(/ackWait "0s"/)
    expect(codeOf(() => parseConsumerDefinition({ maxDeliver: 1.5 }, 's'))).toMatch(/maxDeliver 1.5.*-1 for no limit/)
    expect(codeOf(() => parseConsumerDefinition({ maxAckPending: -2 }, 's'))).toMatch(/maxAckPending -2/)
    expect(codeOf(() => parseConsumerDefinition({ backoff: [] }, 's'))).toMatch(/backoff \[\]/)
    expect(codeOf(() => parseConsumerDefinition({ maxDeliver: 2, backoff: ['1s', '2s', '3s'] }, 's'))).toMatch(/3 steps but maxDeliver 2/)
    expect(codeOf(() => parseConsumerDefinition({ replay: 'fast' }, 's'))).toMatch(/replay "fast"/)
    expect(codeOf(() => parseConsumerDefinition({ deadLetter: 'dlq.*' }, 's'))).toMatch(/ECONSUMER_INVALID: .*deadLetter "dlq.\*"/)
    expect(codeOf(() => parseConsumerDefinition({ ackwait: '1s' }, 's'))).toMatch(/"ackwait" is not a consumer setting/)
    expect(codeOf(() => parseConsumerDefinition(['x'], 's'))).toMatch(/must be an object/)
  })

  it('refuses a filter that matches none of the stream subjects', () => {
    const stream = parseStreamDefinition({ name: 'telemetry', subjects: ['sensors.>'] })
    expect(codeOf(() => checkConsumerFilter(parseConsumerDefinition({ filter: ['sensors.kitchen.*'] }, 'telemetry'), stream))).toBeNull()
    expect(codeOf(() => checkConsumerFilter(parseConsumerDefinition({ name: 'c', filter: ['meters.>'] }, 'telemetry'), stream)))
      .toMatch(/ECONSUMER_INVALID: consumer "c": filter "meters\/#" matches none of stream "telemetry"/)
  })
})
