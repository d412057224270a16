import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { isEdgebusError } from '../../src/core/errors.ts'
import { loadConfig, printableConfig } from '../../src/config/load.ts'
import { envName, flagName } from '../../src/config/schema.ts'
import { parseDuration, parseSize } from '../../src/config/units.ts'

function dirWith(config?: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'edgebus-config-'))
  if (config !== undefined) writeFileSync(join(dir, 'edgebus.json'), typeof config === 'string' ? config : JSON.stringify(config))
  return dir
}

function errorOf(fn: () => unknown): { code: string; message: string } {
  try { fn() } catch (err) { if (isEdgebusError(err)) return { code: err.code, message: err.message }; throw err }
  throw new Error('expected an error')
}

describe('units', () => {
  it('reads durations as people write them', () => {
    expect(parseDuration('300ms')).toBe(300)
    expect(parseDuration('30s')).toBe(30_000)
    expect(parseDuration('5m')).toBe(300_000)
    expect(parseDuration('2h')).toBe(7_200_000)
    expect(parseDuration('7d')).toBe(604_800_000)
    expect(parseDuration(1500)).toBe(1500)
    expect(parseDuration('1.5s')).toBe(1500)
    expect(parseDuration('soon')).toBeNull()
    expect(parseDuration(-1)).toBeNull()
  })
  it('reads sizes as people write them (binary multiples)', () => {
    expect(parseSize('64MB')).toBe(64 * 1024 * 1024)
    expect(parseSize('64 KiB')).toBe(65_536)
    expect(parseSize('512')).toBe(512)
    expect(parseSize(2048)).toBe(2048)
    expect(parseSize('1.5KB')).toBe(1536)
    expect(parseSize('12 parsecs')).toBeNull()
  })
})

describe('loadConfig', () => {
  it('has embedded defaults', () => {
    const { config, file } = loadConfig({ cwd: dirWith(), env: {} })
    expect(file).toBeNull()
    expect(config.mqtt.port).toBe(1883)
    expect(config.http.port).toBe(8080)
    expect(config.limits.maxPacketSize).toBe(1024 * 1024)
  })

  it('merges file < env < flags', () => {
    const cwd = dirWith({ mqtt: { port: 1000 }, http: { port: 1001 }, log: { level: 'warn' } })
    const { config, sources } = loadConfig({ cwd, env: { EDGEBUS_HTTP_PORT: '2001', EDGEBUS_LOG_LEVEL: 'debug' }, flags: { 'log.level': 'error' } })
    expect(config.mqtt.port).toBe(1000)
    expect(config.http.port).toBe(2001)
    expect(config.log.level).toBe('error')
    expect(sources).toMatchObject({ 'mqtt.port': 'file', 'http.port': 'env', 'log.level': 'flag', host: 'default' })
  })

  it('derives env and flag names from the key', () => {
    expect(envName('limits.maxPacketSize')).toBe('EDGEBUS_LIMITS_MAX_PACKET_SIZE')
    expect(flagName('limits.maxPacketSize')).toBe('--limits-max-packet-size')
    expect(flagName('mqtt.port')).toBe('--mqtt-port')
  })

  it('reads durations and sizes from every source', () => {
    const cwd = dirWith({ limits: { drainTimeout: '30s', maxPacketSize: '256KB' } })
    const { config } = loadConfig({ cwd, env: { EDGEBUS_LIMITS_MAX_QUEUED_BYTES: '2MB' } })
    expect(config.limits.drainTimeout).toBe(30_000)
    expect(config.limits.maxPacketSize).toBe(262_144)
    expect(config.limits.maxQueuedBytes).toBe(2 * 1024 * 1024)
  })

  it('names the key, the value and the fix for a wrong type', () => {
    const e = errorOf(() => loadConfig({ cwd: dirWith({ mqtt: { port: 'eighteen' } }), env: {} }))
    expect(e.code).toBe('ECONFIG_INVALID')
    expect(e.message).toContain('"mqtt.port"')
    expect(e.message).toContain('"eighteen"')
    expect(e.message).toContain('0 to 65535')
    const env = errorOf(() => loadConfig({ cwd: dirWith(), env: { EDGEBUS_LIMITS_DRAIN_TIMEOUT: 'forever' } }))
    expect(env.message).toContain('EDGEBUS_LIMITS_DRAIN_TIMEOUT')
    expect(env.message).toContain("'30s'")
    const flag = errorOf(() => loadConfig({ cwd: dirWith(), env: {}, flags: { 'log.level': 'loud' } }))
    expect(flag.message).toContain('--log-level')
    expect(flag.message).toContain('debug')
  })

  it('mqtt.maxKeepAlive: a duration up to 65535 s, in seconds for the broker', () => {
    expect(loadConfig({ cwd: dirWith({ mqtt: { maxKeepAlive: '5m' } }), env: {} }).config.mqtt.maxKeepAlive).toBe(300_000)
    expect(loadConfig({ cwd: dirWith(), env: {} }).config.mqtt.maxKeepAlive).toBe(0)
    const e = errorOf(() => loadConfig({ cwd: dirWith(), env: {}, flags: { 'mqtt.maxKeepAlive': '19h' } }))
    expect(e.code).toBe('ECONFIG_INVALID')
    expect(e.message).toContain('--mqtt-max-keep-alive')
    expect(e.message).toContain('at most')
  })

  it('refuses unknown keys with a suggestion', () => {
    const e = errorOf(() => loadConfig({ cwd: dirWith({ mqtt: { prot: 1884 } }), env: {} }))
    expect(e.code).toBe('ECONFIG_UNKNOWN_KEY')
    expect(e.message).toContain('"mqtt.prot"')
    expect(e.message).toContain('did you mean "mqtt.port"')
    expect(errorOf(() => loadConfig({ cwd: dirWith({ colour: 'blue' }), env: {} })).code).toBe('ECONFIG_UNKNOWN_KEY')
  })

  it('reports unreadable files clearly', () => {
    expect(errorOf(() => loadConfig({ cwd: dirWith('{ "mqtt": '), env: {} })).code).toBe('ECONFIG_FILE')
    expect(errorOf(() => loadConfig({ cwd: dirWith('[1,2]'), env: {} })).code).toBe('ECONFIG_FILE')
    const missing = errorOf(() => loadConfig({ cwd: dirWith(), env: {}, configPath: 'nope.json' }))
    expect(missing.code).toBe('ECONFIG_FILE')
    expect(missing.message).toContain('--config')
  })

  it('prints the merged config as a config file would say it', () => {
    const { config } = loadConfig({ cwd: dirWith({ limits: { maxPacketSize: 65536 } }), env: {} })
    expect(printableConfig(config)).toMatchObject({ mqtt: { port: 1883 }, limits: { maxPacketSize: '64KB', drainTimeout: '10s' } })
  })
})

describe('paths in the config file', () => {
  it("resolve against the file's folder, not the working directory; absolute ones, env and flags stay as given", () => {
    const folder = dirWith({ dataDir: 'state', tls: { cert: 'pki/server.pem', key: '/etc/edgebus/server.key', ca: '' }, auth: { passwordFile: 'passwd', allowAnonymous: true } })
    const elsewhere = dirWith()
    const { config } = loadConfig({ configPath: join(folder, 'edgebus.json'), cwd: elsewhere, env: {} })
    expect(config.dataDir).toBe(join(folder, 'state'))
    expect(config.tls.cert).toBe(join(folder, 'pki/server.pem'))
    expect(config.tls.key).toBe('/etc/edgebus/server.key')
    expect(config.tls.ca).toBe('')
    expect(config.auth.passwordFile).toBe(join(folder, 'passwd'))
    // given on the command line or in the environment: relative to where the command runs, as a shell user expects
    const fromFlags = loadConfig({ configPath: join(folder, 'edgebus.json'), cwd: elsewhere, env: { EDGEBUS_DATA_DIR: 'env-data' }, flags: { 'tls.cert': 'flag.pem' } })
    expect(fromFlags.config.dataDir).toBe('env-data')
    expect(fromFlags.config.tls.cert).toBe('flag.pem')
    // no file: the defaults are as documented (./data, relative to the working directory)
    expect(loadConfig({ cwd: elsewhere, env: {} }).config.dataDir).toBe('./data')
  })
})
