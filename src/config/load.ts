import { parseAuthConfig, OPEN_AUTH, type AuthConfig } from '../auth/acl-config.ts'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import { describeBridge, parseBridges, type BridgeDefinition } from '../bridge/bridge-config.ts'
import { checkNoOverlap, describeStreamDefinition, parseStreamDefinition, type StreamDefinition } from '../stream/stream-config.ts'
import { coerceField, ConfigFields, envName, formatField, suggestKey, type ConfigKey, type ConfigValue, type EdgebusConfig, type Source } from './schema.ts'

/** The file read when no --config is given, if it exists in the working directory. */
export const DEFAULT_CONFIG_FILE = 'edgebus.json'

/** Keys that name files or folders: relative ones in the config file resolve against its folder. */
const FILE_PATHS = new Set<ConfigKey>([
  'dataDir',
  ...(Object.keys(ConfigFields) as ConfigKey[]).filter((k) => ConfigFields[k].kind === 'path'),
])

export interface LoadOptions {
  /** --config PATH: must exist. */
  configPath?: string
  /** Values from flags, by config key. */
  flags?: Partial<Record<ConfigKey, string>>
  env?: NodeJS.ProcessEnv
  cwd?: string
}

export interface LoadedConfig {
  config: EdgebusConfig
  /** The file that was read, if any. */
  file: string | null
  /** Where each key's value came from. */
  sources: Record<ConfigKey, Source>
}

/** Reads defaults < config file < EDGEBUS_* environment < flags, validating every value. */
export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const cwd = opts.cwd ?? process.cwd()
  const env = opts.env ?? process.env
  const values = {} as Record<ConfigKey, ConfigValue>
  const sources = {} as Record<ConfigKey, Source>
  const keys = Object.keys(ConfigFields) as ConfigKey[]
  for (const key of keys) {
    values[key] = coerceField(key, ConfigFields[key].default, 'default')
    sources[key] = 'default'
  }

  let file: string | null = null
  if (opts.configPath !== undefined) {
    file = resolve(cwd, opts.configPath)
    if (!existsSync(file)) {
      throw new EdgebusError('ECONFIG_FILE', `config file ${file} does not exist; check the --config path`, { file })
    }
  } else if (existsSync(resolve(cwd, DEFAULT_CONFIG_FILE))) {
    file = resolve(cwd, DEFAULT_CONFIG_FILE)
  }
  let streams: StreamDefinition[] = []
  let auth: AuthConfig = OPEN_AUTH
  let bridges: BridgeDefinition[] = []
  if (file !== null) {
    const { streams: rawStreams, auth: rawAuth, bridges: rawBridges, ...flat } = readConfigFile(file)
    // a path in the file is relative to the file's folder, wherever the server is started from
    const folder = dirname(file)
    if (rawAuth !== undefined) {
      auth = parseAuthConfig(rawAuth)
      if (auth.passwordFile !== null) auth = { ...auth, passwordFile: resolve(folder, auth.passwordFile) }
    }
    for (const [key, raw] of Object.entries(flat)) {
      const value = coerceField(key as ConfigKey, raw, 'file', file)
      values[key as ConfigKey] = typeof value === 'string' && value !== '' && FILE_PATHS.has(key as ConfigKey) ? resolve(folder, value) : value
      sources[key as ConfigKey] = 'file'
    }
    if (rawStreams !== undefined) streams = readStreams(rawStreams, file)
    if (rawBridges !== undefined) bridges = readBridges(rawBridges, streams, file)
  }

  for (const key of keys) {
    const raw = env[envName(key)]
    if (raw !== undefined && raw !== '') {
      values[key] = coerceField(key, raw, 'env')
      sources[key] = 'env'
    }
  }

  for (const [key, raw] of Object.entries(opts.flags ?? {})) {
    if (raw === undefined) continue
    values[key as ConfigKey] = coerceField(key as ConfigKey, raw, 'flag')
    sources[key as ConfigKey] = 'flag'
  }

  const config = { ...toConfig(values), streams, auth, bridges }
  checkCombinations(config)
  return { config, file, sources }
}

/** Parses a JSON config file into dotted keys; unknown keys are errors with a hint. */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new EdgebusError('ECONFIG_FILE', `cannot read config file ${file}: ${(err as Error).message}`, { file })
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new EdgebusError('ECONFIG_FILE', `config file ${file} is not valid JSON: ${(err as Error).message}`, { file })
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new EdgebusError('ECONFIG_FILE', `config file ${file} must hold a JSON object, like {"mqtt": {"port": 1883}}`, { file })
  }
  const out: Record<string, unknown> = {}
  flatten(doc as Record<string, unknown>, '', out, file)
  return out
}

/** `streams` is the one list in the file: stream definitions, checked here so a bad one stops the start. */
function readStreams(raw: unknown, file: string): StreamDefinition[] {
  if (!Array.isArray(raw)) {
    throw new EdgebusError('ECONFIG_INVALID', `config key "streams" in ${file} must be a list of streams, like [{"name": "telemetry", "subjects": ["sensors.>"]}]`, { key: 'streams' })
  }
  const defs = raw.map((d, i) => {
    try {
      return parseStreamDefinition(d, `config "streams[${i}]" in ${file}`)
    } catch (err) {
      const where = `config "streams[${i}]" in ${file}`
      const message = (err as Error).message
      throw new EdgebusError('ECONFIG_INVALID', message.includes(where) ? message : `${where}: ${message}`, { key: `streams[${i}]` })
    }
  })
  for (const def of defs) {
    if (defs.filter((d) => d.name === def.name).length > 1) {
      throw new EdgebusError('ECONFIG_INVALID', `config "streams" in ${file} declares "${def.name}" twice; give each stream its own name`, { key: 'streams' })
    }
    checkNoOverlap(def, defs)
  }
  return defs
}

/** `bridges`: checked here, outboxes included, so a bad one stops the start naming its key. */
function readBridges(raw: unknown, streams: StreamDefinition[], file: string): BridgeDefinition[] {
  try {
    return parseBridges(raw, streams, `config "bridges" in ${file}`)
  } catch (err) {
    const e = err as EdgebusError
    throw new EdgebusError('ECONFIG_INVALID', e.message, { key: String(e.detail?.key ?? 'bridges') })
  }
}

function flatten(obj: Record<string, unknown>, prefix: string, out: Record<string, unknown>, file: string): void {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix + k
    if (key === 'streams' || key === 'auth' || key === 'bridges') {
      out[key] = v
    } else if (key in ConfigFields) {
      out[key] = v
    } else if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(ConfigFields).some((f) => f.startsWith(key + '.'))) {
      flatten(v as Record<string, unknown>, key + '.', out, file)
    } else {
      const hint = suggestKey(key)
      throw new EdgebusError('ECONFIG_UNKNOWN_KEY',
        `config key "${key}" in ${file} is not known${hint ? `; did you mean "${hint}"?` : ''} (see edgebus serve --help for every key)`,
        { key, file })
    }
  }
}

/** Keys that only make sense together: say which one is missing. */
function checkCombinations(c: EdgebusConfig): void {
  const need = (key: string, what: string): never => {
    throw new EdgebusError('ECONFIG_INVALID', `config "${key}" is needed ${what}`, { key })
  }
  if (c.tls.cert !== '' && c.tls.key === '') need('tls.key', 'with tls.cert: the PEM private key file of the certificate')
  if (c.tls.key !== '' && c.tls.cert === '') need('tls.cert', 'with tls.key: the PEM certificate chain file')
  if (c.tls.cert === '' && (c.tls.http || c.tls.ca !== '')) need('tls.cert', `for ${c.tls.http ? 'tls.http' : 'tls.ca'}: the PEM certificate chain file of the server`)
  if (c.tls.requireClientCert && c.tls.ca === '') need('tls.ca', 'with tls.requireClientCert: the PEM file of the CA that signs client certificates')
}

/** The values as the nested config object: `limits.maxPacketSize` becomes limits → maxPacketSize. */
function toConfig(v: Record<ConfigKey, ConfigValue>): Omit<EdgebusConfig, 'streams' | 'auth' | 'bridges'> {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(v) as ConfigKey[]) setPath(out, key, v[key])
  return out as unknown as Omit<EdgebusConfig, 'streams' | 'auth' | 'bridges'>
}

/** Sets `a.b.c` in a nested object, making the levels on the way. */
function setPath(out: Record<string, unknown>, key: string, value: unknown): void {
  const path = key.split('.')
  let node = out
  for (const part of path.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>
  node[path[path.length - 1] as string] = value
}

/** The merged configuration as a config file would say it, for --print-config. */
export function printableConfig(config: EdgebusConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(ConfigFields) as ConfigKey[]) {
    let value: unknown = config
    for (const part of key.split('.')) value = (value as Record<string, unknown>)[part]
    // never print a secret (issue 17: the NATS password and token)
    const secret = (key === 'cluster.password' || key === 'cluster.token') && value !== ''
    setPath(out, key, secret ? '(set)' : formatField(key, value as ConfigValue))
  }
  out.streams = config.streams.map(describeStreamDefinition)
  if (config.bridges.length > 0) out.bridges = config.bridges.map(describeBridge)
  if (config.auth !== OPEN_AUTH) {
    // never print the token secret
    const a = config.auth
    out.auth = { passwordFile: a.passwordFile, allowAnonymous: a.allowAnonymous, tokenSecret: a.tokenSecret === null ? null : '(set)', acl: a.acl === null ? null : '(set)' }
  }
  return out
}
