import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseBridgeDefinition, parseBridges, withOutboxes } from '../../src/bridge/bridge-config.ts'
import { loadConfig, printableConfig } from '../../src/config/load.ts'
import { parseStreamDefinition } from '../../src/stream/stream-config.ts'

const minimal = { name: 'cloud', urls: ['mqtts://a.example:8883'], out: [{ from: 'sensors/#' }] }

function configWith(doc: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'edgebus-bridge-config-'))
  writeFileSync(join(dir, 'edgebus.json'), JSON.stringify(doc))
  return dir
}

describe('bridge definitions', () => {
  it('fills in the defaults: MQTT 5, QoS 1, a client id, an outbox stream of its own', () => {
    const d = parseBridgeDefinition(minimal)
    expect(d).toMatchObject({ kind: 'mqtt', mqttVersion: 5, clientId: 'edgebus-cloud', outboxStream: 'bridge-cloud', ownOutbox: true, window: 1000, maxDeliver: 5, ackTimeout: 30_000 })
    expect(d.out[0]?.qos).toBe(1)
    expect(parseBridgeDefinition({ ...minimal, urls: ['nats://a:4222', 'tls://b:4222'] }).kind).toBe('nats')
    expect(parseBridgeDefinition({ ...minimal, mqttVersion: '3.1.1' }).mqttVersion).toBe(4)
    expect(parseBridgeDefinition({ ...minimal, urls: ['nats://a:4222'], in: [{ from: 'cmd.>', stream: 'CMDS' }, { from: 'live.>' }] }).in.map((r) => r.stream)).toEqual(['CMDS', null])
  })

  it.each([
    [{ ...minimal, urls: [] }, /urls.*list of remote URLs/],
    [{ ...minimal, urls: ['http://x:1'] }, /schemes mqtt:\/\//],
    [{ ...minimal, in: [{ from: 'cmd/#', stream: 'CMDS' }] }, /in\[0\]\.stream.*only a NATS bridge/],
    [{ ...minimal, urls: ['nats://a:4222'], in: [{ from: 'cmd.>', stream: 'CM.DS' }] }, /in\[0\]\.stream.*name the remote JetStream stream/],
    [{ ...minimal, out: [{ from: 'a/#', stream: 'X' }] }, /out\[0\]\.stream.*only from, to and qos/],
    [{ ...minimal, urls: ['mqtt://a:1', 'nats://b:2'] }, /one kind of remote/],
    [{ ...minimal, out: [{ from: 'a/#', to: 'b/{1}' }] }, /out\[0\].*\{1\}/],
    [{ ...minimal, out: [{ from: 'a/#', qos: 2 }] }, /out\[0\]\.qos.*use 1/],
    [{ ...minimal, out: [] }, /at least one "out" or "in" rule/],
    [{ ...minimal, password: 'x' }, /username.*with "password"/],
    [{ ...minimal, cert: 'c.pem' }, /needs both "cert" and "key"/],
    [{ ...minimal, token: 't' }, /token.*NATS remotes/],
    [{ ...minimal, window: 0 }, /window 0.*from 1 to 65535/],
    [{ ...minimal, rate: { msgs: -1 } }, /rate\.msgs/],
    [{ ...minimal, rate: { bytes: 'fast' } }, /rate\.bytes/],
    [{ ...minimal, backoff: { min: '2s', max: '1s' } }, /backoff\.max/],
    [{ ...minimal, outbox: { stream: 'x', maxAge: '1d' } }, /declared stream's own/],
    [{ ...minimal, colour: 'blue' }, /"colour" is not a bridge setting/],
    [{ ...minimal, name: 'a b' }, /name "a b"/],
  ])('refuses %j naming the key and the fix', (raw, message) => {
    expect(() => parseBridgeDefinition(raw)).toThrow(message)
  })

  it('makes an outbox stream per bridge, with the consumer that drains it, and the outbox limits', () => {
    const b = parseBridgeDefinition({ ...minimal, outbox: { maxBytes: '1GB', maxAge: '7d' } })
    const [s] = withOutboxes([], [b])
    expect(s).toMatchObject({ name: 'bridge-cloud', subjects: ['sensors/#'], limits: { maxBytes: 1024 ** 3, maxAge: 7 * 86_400_000 } })
    expect(s?.consumers[0]).toMatchObject({ name: 'bridge-cloud', filter: ['sensors/#'], maxDeliver: 0, maxAckPending: 1000 })
  })

  it('drains a declared stream (outbox.stream) when the out rules overlap one, and says so when they do not fit', () => {
    const telemetry = parseStreamDefinition({ name: 'telemetry', subjects: ['sensors/#'] })
    expect(() => parseBridges([minimal], [telemetry])).toThrow(/overlap stream "telemetry".*"outbox": \{"stream": "telemetry"\}/)
    const all = withOutboxes([telemetry], parseBridges([{ ...minimal, outbox: { stream: 'telemetry' } }], [telemetry]))
    expect(all.map((s) => s.name)).toEqual(['telemetry'])
    expect(all[0]?.consumers.map((c) => c.name)).toEqual(['bridge-cloud'])
    expect(() => parseBridges([{ ...minimal, out: [{ from: 'meters/#' }], outbox: { stream: 'telemetry' } }], [telemetry])).toThrow(/not inside the subjects of stream "telemetry"/)
    expect(() => parseBridges([{ ...minimal, outbox: { stream: 'nope' } }], [])).toThrow(/outbox.stream "nope" is not declared/)
    expect(() => parseBridges([minimal, minimal], [])).toThrow(/names "cloud" twice/)
  })

  it('is a file-only config section: loadConfig checks it and --print-config hides the secrets', () => {
    const { config } = loadConfig({ cwd: configWith({ bridges: [{ ...minimal, username: 'u', password: 'p' }] }), env: {} })
    expect(config.bridges.map((b) => b.name)).toEqual(['cloud'])
    const printed = printableConfig(config) as { bridges: Array<Record<string, unknown>> }
    expect(printed.bridges[0]).toMatchObject({ name: 'cloud', username: 'u', password: '(set)' })
    expect(() => loadConfig({ cwd: configWith({ bridges: [{ ...minimal, urls: 'mqtt://x' }] }), env: {} })).toThrow(/config "bridges" in .*\[0\] "cloud": urls/)
  })
})

describe('a bridge config the server refuses', () => {
  it('does not start with an unreadable certificate file, naming the bridge, the key and the fix', async () => {
    const { startEdgebus } = await import('../support/edgebus.ts')
    const err = await startEdgebus({ config: { bridges: [{ ...minimal, ca: '/nonexistent/ca.pem' }] } }).then(() => null, (e: unknown) => e as Error)
    expect(err?.message).toMatch(/EBRIDGE_INVALID.*bridge "cloud": ca file \/nonexistent\/ca.pem cannot be read.*fix the path/s)
  })

  it('does not start with a bad bridges section, naming the key', async () => {
    const { startEdgebus } = await import('../support/edgebus.ts')
    const err = await startEdgebus({ config: { bridges: [{ ...minimal, window: -1 }] } }).then(() => null, (e: unknown) => e as Error)
    expect(err?.message).toMatch(/ECONFIG_INVALID.*bridges.*\[0\] "cloud": window -1 is not valid; use a whole number from 1 to 65535/s)
  })
})
