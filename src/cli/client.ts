import { readFileSync } from 'node:fs'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { EdgebusError } from '../core/errors.ts'
import { toMqttTopic } from '../subjects/mqtt-map.ts'
import { intOption } from './args.ts'

export const DEFAULT_URL = 'mqtt://localhost:1883'

export const connectionHelp = `  --url URL            server to use (default ${DEFAULT_URL}; mqtts://host:8883 for TLS, ws://host:8080/mqtt for WebSocket)
  --protocol 4|5       MQTT protocol version (default 5)
  --username USER      user name; password from --password or EDGEBUS_PASSWORD
  --password PASS
  --client-id ID       client identifier (default: random)
  --user-property K=V  an MQTT 5 user property (repeat for more): on the message (pub), the SUBSCRIBE (sub)
  --will-topic SUBJECT published by the server if this client goes away without saying so
  --will-payload MSG   --will-qos 0|1|2     --will-retain
TLS (mqtts://, wss://):
  --cafile FILE        trust the CA certificates in this PEM file (a private CA)
  --cert FILE          client certificate (PEM), with --key: log in with a certificate
  --key FILE           the client certificate's private key (PEM)
  --insecure           do not check the server certificate (testing only)`

export const connectionOptions = {
  url: { type: 'string' },
  protocol: { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  'client-id': { type: 'string' },
  'user-property': { type: 'string', multiple: true },
  'will-topic': { type: 'string' },
  'will-payload': { type: 'string' },
  'will-qos': { type: 'string' },
  'will-retain': { type: 'boolean' },
  cafile: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  insecure: { type: 'boolean' },
} as const

/** MQTT 3.1.1 and 5.0 CONNACK refusals (return codes 1-5; reason codes 0x80 and up), as mosquitto says them. */
const CONNACK_REASONS: Record<number, string> = {
  1: 'unacceptable protocol version', 2: 'client identifier rejected', 3: 'server unavailable', 4: 'bad user name or password', 5: 'not authorized',
  0x80: 'unspecified error', 0x84: 'unsupported protocol version', 0x85: 'client identifier not valid', 0x86: 'bad user name or password',
  0x87: 'not authorized', 0x88: 'server unavailable', 0x89: 'server busy', 0x8a: 'banned', 0x8c: 'bad authentication method',
  0x95: 'packet too large', 0x97: 'quota exceeded', 0x99: 'payload format invalid', 0x9f: 'connection rate exceeded',
}

/** The server refused after the CLI reached it: EREFUSED with the reason code (exit 1), not ECONNECT. */
export function refusedByServer(what: string, code: number): EdgebusError {
  const reason = CONNACK_REASONS[code]
  return new EdgebusError('EREFUSED', `the server refused ${what}: reason code 0x${code.toString(16).padStart(2, '0')}${reason === undefined ? '' : ` (${reason})`}`, { reasonCode: code })
}

/** `--user-property k=v` (repeatable) as MQTT.js user properties; a name given twice keeps every value. */
export function userProperties(values: Record<string, unknown>): Record<string, string | string[]> | undefined {
  const raw = values['user-property'] as string[] | undefined
  if (raw === undefined || raw.length === 0) return undefined
  if (((values.protocol as string | undefined) ?? '5') !== '5') throw new EdgebusError('EUSAGE', '--user-property needs MQTT 5 (--protocol 5): MQTT 3.1.1 has no user properties')
  const out: Record<string, string | string[]> = {}
  for (const pair of raw) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new EdgebusError('EUSAGE', `--user-property ${JSON.stringify(pair)} is not valid: write NAME=VALUE`)
    const name = pair.slice(0, eq)
    const value = pair.slice(eq + 1)
    const had = out[name]
    out[name] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value]
  }
  return out
}

function readPem(flag: string, path: unknown): Buffer | undefined {
  if (typeof path !== 'string') return undefined
  try {
    return readFileSync(path)
  } catch (err) {
    throw new EdgebusError('ETLS_CONFIG', `--${flag} ${path}: ${(err as Error).message}`, { flag, path })
  }
}

/** The MQTT.js options of the connection flags (pure but for reading the PEM files). */
export function clientOptions(values: Record<string, unknown>, clean: boolean): IClientOptions {
  const protocol = (values.protocol as string | undefined) ?? '5'
  if (protocol !== '4' && protocol !== '5') throw new EdgebusError('EUSAGE', `--protocol ${JSON.stringify(protocol)} is not valid: use 4 (MQTT 3.1.1) or 5 (MQTT 5.0)`)
  if ((values.cert === undefined) !== (values.key === undefined)) throw new EdgebusError('EUSAGE', '--cert and --key go together: the client certificate and its private key')
  const opts: IClientOptions = {
    protocolVersion: protocol === '5' ? 5 : 4,
    clean,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    clientId: values['client-id'] as string | undefined,
    username: values.username as string | undefined,
    password: (values.password as string | undefined) ?? process.env.EDGEBUS_PASSWORD,
  }
  const ca = readPem('cafile', values.cafile)
  const cert = readPem('cert', values.cert)
  const key = readPem('key', values.key)
  if (ca !== undefined) opts.ca = ca
  if (cert !== undefined) opts.cert = cert
  if (key !== undefined) opts.key = key
  if (values.insecure === true) opts.rejectUnauthorized = false
  const willTopic = values['will-topic'] as string | undefined
  if (willTopic !== undefined) {
    opts.will = {
      topic: toMqttTopic(willTopic),
      payload: Buffer.from((values['will-payload'] as string | undefined) ?? ''),
      qos: intOption(values['will-qos'] as string | undefined, 'will-qos', 0, 2, 0) as 0 | 1 | 2,
      retain: values['will-retain'] === true,
    }
  } else if (values['will-payload'] !== undefined || values['will-qos'] !== undefined || values['will-retain'] !== undefined) {
    throw new EdgebusError('EUSAGE', '--will-payload, --will-qos and --will-retain need --will-topic')
  }
  return opts
}

/**
 * Connects with MQTT.js. ECONNECT when the server cannot be reached; EREFUSED with the reason code
 * when it answered and said no.
 */
export function connect(values: Record<string, unknown>, clean = true): Promise<MqttClient> {
  const url = (values.url as string | undefined) ?? process.env.EDGEBUS_URL ?? DEFAULT_URL
  let opts: IClientOptions
  try {
    opts = clientOptions(values, clean)
  } catch (err) {
    return Promise.reject(err)
  }
  const client = mqtt.connect(url, opts)
  return new Promise((resolve, reject) => {
    const fail = (err: Error): void => {
      client.end(true)
      const code = (err as { code?: unknown }).code
      if (typeof code === 'number') reject(refusedByServer('the connection', code))
      else reject(new EdgebusError('ECONNECT', `cannot connect to ${url}: ${err.message}`, { url }))
    }
    client.once('connect', () => {
      client.off('error', fail)
      resolve(client)
    })
    client.once('error', fail)
    client.once('close', () => fail(new Error('connection closed before CONNACK')))
  })
}

export function endClient(client: MqttClient): Promise<void> {
  return new Promise((resolve) => client.end(false, {}, () => resolve()))
}
