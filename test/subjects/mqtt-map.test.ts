import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { isEdgebusError } from '../../src/core/errors.ts'
import { detectSyntax, mqttToNats, natsToMqtt, toMqttFilter, toMqttTopic } from '../../src/subjects/mqtt-map.ts'
import { parseNatsSubject } from '../../src/subjects/subject.ts'
import { topicMatchesFilter } from '../../src/subjects/topic.ts'

// Characters that exercise every escape: separators of both syntaxes, '%' and the escape digits.
const tricky = fc.constantFrom('a', 'b', '.', '/', '%', '2', 'F', 'E', 'B', '3', '*', '>', '+', '#', ' ', 'é', '$')
const mqttLevel = fc.string({ unit: fc.constantFrom('a', 'b', '.', '%', '2', 'F', 'E', 'B', '3', '*', '>', ' ', 'é', '$'), maxLength: 6 })
const mqttTopic = fc.array(mqttLevel, { minLength: 1, maxLength: 5 }).map((l) => l.join('/')).filter((t) => t.length > 0)

describe('subject mapping MQTT <-> NATS-style', () => {
  it('maps the everyday cases', () => {
    expect(mqttToNats('sensors/kitchen/temp')).toBe('sensors.kitchen.temp')
    expect(natsToMqtt('sensors.kitchen.temp')).toBe('sensors/kitchen/temp')
    expect(natsToMqtt('sensors.*.temp')).toBe('sensors/+/temp')
    expect(natsToMqtt('sensors.>')).toBe('sensors/#')
    expect(mqttToNats('sensors/+/temp')).toBe('sensors.*.temp')
    expect(mqttToNats('sensors/#')).toBe('sensors.>')
    expect(mqttToNats('$SYS/broker/uptime')).toBe('$SYS.broker.uptime')
  })

  it('escapes what the other syntax cannot hold', () => {
    expect(mqttToNats('fw/v1.2/status')).toBe('fw.v1%2E2.status') // '.' inside an MQTT level
    expect(natsToMqtt('a/b.c')).toBe('a%2Fb/c') // '/' inside a NATS token
    expect(toMqttFilter('nats:a/b.c')).toBe('a%2Fb/c') // typed by a user: the prefix says which syntax
    expect(mqttToNats('a%2Fb/c')).toBe('a/b.c')
    expect(mqttToNats('50%/x')).toBe('50%25.x')
    expect(mqttToNats('a//b')).toBe('a.%.b') // empty level
    expect(mqttToNats('*/>')).toBe('%2A.%3E') // literal '*' and '>' levels are not wildcards
  })

  it('MQTT -> NATS -> MQTT is the identity on random topics', () => {
    fc.assert(fc.property(mqttTopic, (t) => {
      const nats = mqttToNats(t)
      expect(parseNatsSubject(nats, false).length).toBe(t.split('/').length)
      expect(natsToMqtt(nats, false)).toBe(t)
    }), { numRuns: 3000 })
  })

  it('NATS -> MQTT -> NATS is the identity on every valid random subject', () => {
    const natsToken = fc.string({ unit: tricky, minLength: 1, maxLength: 6 })
    const subject = fc.array(natsToken, { minLength: 1, maxLength: 5 }).map((t) => t.join('.'))
    let valid = 0
    fc.assert(fc.property(subject, (s) => {
      let mqtt: string
      try {
        mqtt = natsToMqtt(s, true)
      } catch (err) {
        expect(isEdgebusError(err, 'ESUBJECT_INVALID')).toBe(true)
        return
      }
      valid++
      expect(mqttToNats(mqtt)).toBe(s)
    }), { numRuns: 5000 })
    expect(valid).toBeGreaterThan(1000)
  })

  it('matching is the same in both syntaxes', () => {
    fc.assert(fc.property(mqttTopic, fc.array(fc.constantFrom('+', '#', 'a', 'b', ''), { minLength: 1, maxLength: 4 }), (topic, parts) => {
      const hash = parts.indexOf('#')
      const filter = (hash === -1 ? parts : parts.slice(0, hash + 1)).join('/')
      const viaNats = natsToMqtt(mqttToNats(filter), true)
      expect(viaNats).toBe(filter)
      expect(topicMatchesFilter(topic, viaNats)).toBe(topicMatchesFilter(topic, filter))
    }), { numRuns: 2000 })
  })

  it('rejects malformed NATS-style subjects with ESUBJECT_INVALID', () => {
    for (const bad of ['a..b', '.a', 'a.', 'a.>.b', 'a.%41', 'a.%252F', '']) {
      let code: string | null = null
      try { natsToMqtt(bad) } catch (err) { code = isEdgebusError(err) ? err.code : 'OTHER' }
      expect(code, bad).toBe('ESUBJECT_INVALID')
    }
  })

  it('detects the syntax of user input, with explicit prefixes winning', () => {
    expect(detectSyntax('a/b.c')).toEqual({ syntax: 'mqtt', text: 'a/b.c' })
    expect(detectSyntax('a.b')).toEqual({ syntax: 'nats', text: 'a.b' })
    expect(toMqttFilter('#')).toBe('#') // MQTT's 'everything', typed alone
    expect(toMqttFilter('+')).toBe('+')
    expect(toMqttFilter('>')).toBe('#') // NATS' 'everything'
    expect(detectSyntax('mqtt:v1.2')).toEqual({ syntax: 'mqtt', text: 'v1.2' })
    expect(toMqttFilter('sensors.>')).toBe('sensors/#')
    expect(toMqttFilter('sensors/#')).toBe('sensors/#')
    expect(toMqttTopic('mqtt:fw/v1.2')).toBe('fw/v1.2')
  })

  it('refuses wildcards where a concrete subject is needed', () => {
    for (const s of ['a.*', 'a.>', 'a/+', 'a/#']) {
      let code: string | null = null
      try { toMqttTopic(s) } catch (err) { code = isEdgebusError(err) ? err.code : 'OTHER' }
      expect(code, s).toBe('ESUBJECT_WILDCARD')
    }
  })
})
