import { EdgebusError } from '../core/errors.ts'
import { LogLevels, type LogLevel } from '../core/log.ts'
import type { StreamDefinition } from '../stream/stream-config.ts'
import type { AuthConfig } from '../auth/acl-config.ts'
import type { BridgeDefinition } from '../bridge/bridge-config.ts'
import { formatDuration, formatSize, parseDuration, parseSize } from './units.ts'

/**
 * Every configuration key: its type, default and meaning. The file, the EDGEBUS_* environment
 * variables and the command-line flags are all derived from this one table, so a key has the same
 * name everywhere: `limits.maxPacketSize` = env EDGEBUS_LIMITS_MAX_PACKET_SIZE = flag
 * --limits-max-packet-size. `edgebus serve --help` lists them from it.
 */

type Kind = 'string' | 'text' | 'path' | 'port' | 'size' | 'duration' | 'level' | 'count' | 'limit' | 'boolean' | 'origins'

/** A key's value once read: booleans for 'boolean' keys. */
export type ConfigValue = string | number | boolean

interface Field {
  readonly kind: Kind
  readonly default: ConfigValue
  readonly doc: string
  /** Largest value a 'duration' key takes (ms). */
  readonly max?: number
}

export const ConfigFields = {
  host: { kind: 'string', default: '0.0.0.0', doc: 'address the MQTT and HTTP listeners bind to' },
  'mqtt.port': { kind: 'port', default: 1883, doc: 'MQTT over TCP port (0 = any free port)' },
  'http.port': { kind: 'port', default: 8080, doc: 'HTTP port: /healthz and MQTT over WebSocket on /mqtt (0 = any free port)' },
  'log.level': { kind: 'level', default: 'info', doc: `log level: ${LogLevels.join(', ')}` },
  dataDir: { kind: 'string', default: './data', doc: 'directory for streams and persistent state' },
  'limits.maxPacketSize': { kind: 'size', default: '1MB', doc: 'largest MQTT packet accepted from a client' },
  'limits.maxQueuedBytes': { kind: 'size', default: '1MB', doc: 'per-client queue over which QoS 0 messages are dropped (slow consumer)' },
  'limits.maxQueuedBytesHard': { kind: 'size', default: '16MB', doc: 'per-client queue over which the client is disconnected' },
  'limits.receiveMaximum': { kind: 'count', default: 1024, doc: 'QoS 1/2 messages a client may have unacknowledged towards the server (MQTT 5 Receive Maximum; also bounds QoS 2 of MQTT 3.1.1 clients)' },
  'limits.drainTimeout': { kind: 'duration', default: '10s', doc: 'how long a client that stopped reading may hold QoS 1/2 deliveries before it is disconnected' },
  // issue 5: retained messages and persistent sessions on disk (src/persistence)
  'persistence.enabled': { kind: 'boolean', default: true, doc: 'keep retained messages and persistent sessions in <dataDir>/mqtt so they survive restarts (false: in memory only)' },
  'sessions.maxQueuedMessages': { kind: 'count', default: 1000, doc: 'messages queued per disconnected persistent session; over it the oldest QoS 0/1 message is dropped (/healthz persistence.queueDropped)' },
  'sessions.expiry': { kind: 'duration', default: '7d', doc: 'how long a disconnected persistent session is kept: MQTT 3.1.1 sessions, and the upper bound of an MQTT 5 Session Expiry Interval (0 = no bound: MQTT 3.1.1 sessions never expire)' },
  // issue 8: listeners, TLS, limits and observability
  'mqtt.enabled': { kind: 'boolean', default: true, doc: 'serve plain MQTT on mqtt.port (false: only MQTT over TLS and WebSocket)' },
  'mqtt.maxKeepAlive': { kind: 'duration', default: 0, max: 65_535_000, doc: 'longest Keep Alive a client may use, at most 65535s (0 = the client\'s own): MQTT 5 clients asking more, or none, are told this one (Server Keep Alive in CONNACK); MQTT 3.1.1 clients are accepted and closed after 1.5 x this silence' },
  'tls.cert': { kind: 'path', default: '', doc: 'PEM certificate chain file: enables MQTT over TLS on tls.mqttPort (reloaded on SIGHUP)' },
  'tls.key': { kind: 'path', default: '', doc: 'PEM private key file of tls.cert' },
  'tls.ca': { kind: 'path', default: '', doc: 'PEM CA file: clients may authenticate with a certificate it signed (mTLS; the certificate CN is the user name)' },
  'tls.requireClientCert': { kind: 'boolean', default: false, doc: 'refuse TLS clients without a certificate signed by tls.ca' },
  'tls.mqttPort': { kind: 'port', default: 8883, doc: 'MQTT over TLS port (when tls.cert is set)' },
  'tls.http': { kind: 'boolean', default: false, doc: 'serve HTTPS and WSS on http.port with tls.cert instead of plain HTTP' },
  'limits.maxConnections': { kind: 'limit', default: 100_000, doc: 'client connections at most (MQTT, WebSocket and /ws together; 0 = no limit)' },
  'limits.maxConnectionsPerAddress': { kind: 'limit', default: 0, doc: 'client connections at most from one source address (0 = no limit)' },
  'limits.connectRate': { kind: 'limit', default: 0, doc: 'new connections per second at most from one source address, bursts up to the same number (0 = no limit)' },
  'limits.maxTopicLength': { kind: 'limit', default: 65_535, doc: 'longest topic or filter in bytes' },
  'limits.maxTopicLevels': { kind: 'limit', default: 128, doc: 'most levels in a topic or filter' },
  'limits.maxSubscriptions': { kind: 'limit', default: 1000, doc: 'subscriptions at most per client (0 = no limit)' },
  'limits.publishRate': { kind: 'limit', default: 0, doc: 'messages per second at most per client, bursts up to the same number; over it the client is slowed (reading paused), not disconnected (0 = no limit)' },
  // issue 19: the NATS client protocol (src/nats)
  'nats.enabled': { kind: 'boolean', default: true, doc: 'serve the NATS client protocol on nats.port (nats.js, nats.go and the NATS tools connect directly)' },
  'nats.port': { kind: 'port', default: 4222, doc: 'NATS client protocol port (0 = any free port)' },
  'nats.pingInterval': { kind: 'duration', default: '2m', doc: 'how often the server PINGs NATS clients; two unanswered PINGs close the connection (Stale Connection)' },
  'sys.interval': { kind: 'duration', default: '10s', doc: 'how often the $SYS/broker/... topics are published (0 = never)' },
  // issue 20: pages on other origins
  'http.cors': { kind: 'origins', default: '', doc: "origins whose pages may call the HTTP API from a browser (CORS): '*' for any, or a comma-separated list like 'https://app.example.com,http://localhost:5173' ('' = none)" },
  // issue 17: several nodes as one broker over a NATS cluster (src/cluster, docs/cluster.md)
  'cluster.urls': { kind: 'text', default: '', doc: "NATS servers of the cluster, comma-separated like 'nats://10.0.0.1:4222,nats://10.0.0.2:4222' ('' = no cluster: this node is on its own)" },
  'cluster.name': { kind: 'string', default: 'edgebus', doc: 'name of the edgebus cluster: nodes with the same name on the same NATS act as one broker (NATS subjects under eb.<name>.)' },
  'cluster.nodeId': { kind: 'text', default: '', doc: "this node's id in the cluster ('' = one made up once and kept in <dataDir>/cluster/node-id)" },
  'cluster.user': { kind: 'text', default: '', doc: 'NATS user name (with cluster.password)' },
  'cluster.password': { kind: 'text', default: '', doc: 'NATS password of cluster.user' },
  'cluster.token': { kind: 'text', default: '', doc: 'NATS authentication token' },
  'cluster.tlsCa': { kind: 'path', default: '', doc: 'PEM CA file the NATS servers\' certificates are checked against (enables TLS to NATS)' },
  'cluster.tlsCert': { kind: 'path', default: '', doc: 'PEM client certificate for NATS (mTLS, with cluster.tlsKey)' },
  'cluster.tlsKey': { kind: 'path', default: '', doc: 'PEM private key of cluster.tlsCert' },
  'cluster.replicas': { kind: 'count', default: 1, doc: 'JetStream replicas of the cluster\'s retained messages: 1, 3 or 5 (at most the NATS servers with JetStream)' },
} as const satisfies Record<string, Field>

export type ConfigKey = keyof typeof ConfigFields

export interface EdgebusConfig {
  host: string
  mqtt: { port: number; enabled: boolean; maxKeepAlive: number }
  http: { port: number; cors: string }
  nats: { port: number; enabled: boolean; pingInterval: number }
  tls: { cert: string; key: string; ca: string; requireClientCert: boolean; mqttPort: number; http: boolean }
  sys: { interval: number }
  log: { level: LogLevel }
  dataDir: string
  limits: {
    maxPacketSize: number; maxQueuedBytes: number; maxQueuedBytesHard: number; receiveMaximum: number; drainTimeout: number
    maxConnections: number; maxConnectionsPerAddress: number; connectRate: number; maxTopicLength: number; maxTopicLevels: number
    maxSubscriptions: number; publishRate: number
  }
  persistence: { enabled: boolean }
  cluster: { urls: string; name: string; nodeId: string; user: string; password: string; token: string; tlsCa: string; tlsCert: string; tlsKey: string; replicas: number }
  sessions: { maxQueuedMessages: number; expiry: number }
  /** Streams declared in the config file (the file's `streams` list; not settable by env or flags). */
  streams: StreamDefinition[]
  /** Users, tokens and ACLs: the file's `auth` section (src/auth/ACL.md); open when absent. */
  auth: AuthConfig
  /** Store-and-forward bridges to remote brokers: the file's `bridges` list (docs/bridges.md). */
  bridges: BridgeDefinition[]
}

/** Where a value came from, for error messages. */
export type Source = 'default' | 'file' | 'env' | 'flag'

export function envName(key: string): string {
  return 'EDGEBUS_' + key.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()
}

export function flagName(key: string): string {
  return '--' + key.replace(/\./g, '-').replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase()
}

function describeSource(key: string, source: Source, file?: string): string {
  switch (source) {
    case 'file': return `config key "${key}"${file ? ` in ${file}` : ''}`
    case 'env': return `environment variable ${envName(key)}`
    case 'flag': return `flag ${flagName(key)}`
    default: return `default of "${key}"`
  }
}

/** Converts and checks one raw value; throws ECONFIG_INVALID naming the key, the value and the fix. */
export function coerceField(key: ConfigKey, raw: unknown, source: Source, file?: string): ConfigValue {
  const field: Field = ConfigFields[key]
  const where = describeSource(key, source, file)
  const bad = (fix: string): never => {
    throw new EdgebusError('ECONFIG_INVALID', `${where}: ${JSON.stringify(raw)} is not valid; ${fix}`, { key, value: raw, source })
  }
  switch (field.kind) {
    case 'string':
      if (typeof raw !== 'string' || raw.length === 0) bad('use a non-empty string')
      return raw as string
    case 'text':
      if (typeof raw !== 'string') bad('use a string (or an empty string for none)')
      return raw as string
    case 'path':
      if (typeof raw !== 'string') bad('use a file path (or an empty string for none)')
      return raw as string
    case 'origins': {
      if (typeof raw !== 'string') bad("use '*', or origins separated by commas like 'https://app.example.com'")
      const problem = corsOriginsProblem(raw as string)
      if (problem !== null) bad(`${problem}; an origin is scheme://host[:port], like 'https://app.example.com' (or '*' for any)`)
      return raw as string
    }
    case 'limit':
      return wholeNumber(raw, 0, 2 ** 31 - 1) ?? bad('use a whole number (0 for no limit where the key allows it)')
    case 'port':
      return wholeNumber(raw, 0, 65_535) ?? bad('use a port number from 0 to 65535 (0 picks a free port)')
    case 'size': {
      const n = parseSize(raw)
      if (n === null || n <= 0) bad("use a size such as 65536, '64KB' or '16MB'")
      return n as number
    }
    case 'count':
      return wholeNumber(raw, 1, 65_535) ?? bad('use a whole number from 1 to 65535')
    case 'duration': {
      const n = parseDuration(raw)
      if (n === null) bad("use a duration such as 500, '300ms', '30s', '5m' or '7d'")
      if (field.max !== undefined && (n as number) > field.max) bad(`use a duration of at most ${formatDuration(field.max)}`)
      return n as number
    }
    case 'level':
      if (typeof raw !== 'string' || !(LogLevels as readonly string[]).includes(raw)) bad(`use one of ${LogLevels.join(', ')}`)
      return raw as string
    case 'boolean': {
      if (typeof raw === 'boolean') return raw
      const text = typeof raw === 'string' ? raw.trim().toLowerCase() : ''
      if (['true', 'yes', 'on', '1'].includes(text)) return true
      if (['false', 'no', 'off', '0'].includes(text)) return false
      return bad('use true or false')
    }
  }
}

/** Whether a config value is '', '*' or origins like `https://app.example.com` (scheme, host, port; no path). */
function corsOriginsProblem(text: string): string | null {
  for (const o of text.split(',').map((x) => x.trim()).filter(Boolean)) {
    if (o === '*') continue
    let origin: string
    try {
      origin = new URL(o).origin
    } catch {
      return `"${o}" is not an origin`
    }
    if (origin !== o) return `"${o}" is not an origin: write it as ${origin}`
  }
  return null
}

/** A whole number in [min, max] from a number or a string of digits, else null. */
function wholeNumber(raw: unknown, min: number, max: number): number | null {
  const n = typeof raw === 'string' && /^\d+$/.test(raw.trim()) ? Number(raw) : raw
  return typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max ? n : null
}

/** The closest known key, for "did you mean" hints. */
export function suggestKey(key: string): string | null {
  let best: string | null = null
  let bestDist = Infinity
  for (const known of Object.keys(ConfigFields)) {
    const d = editDistance(key.toLowerCase(), known.toLowerCase())
    if (d < bestDist) { bestDist = d; best = known }
  }
  return bestDist <= Math.max(2, Math.floor(key.length / 3)) ? best : null
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j] as number
      row[j] = Math.min(cur + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = cur
    }
  }
  return row[b.length] as number
}

/** A human-readable value for --print-config. */
export function formatField(key: ConfigKey, value: ConfigValue): ConfigValue {
  const kind: Kind = ConfigFields[key].kind
  if (kind === 'size' && typeof value === 'number') return formatSize(value)
  if (kind === 'duration' && typeof value === 'number') return formatDuration(value)
  return value
}
