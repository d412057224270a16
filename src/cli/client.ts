import mqtt, { type MqttClient } from 'mqtt'
import { EdgebusError } from '../core/errors.ts'

export const DEFAULT_URL = 'mqtt://localhost:1883'

export const connectionHelp = `  --url URL            server to use (default ${DEFAULT_URL}; ws://host:8080/mqtt for WebSocket)
  --protocol 4|5       MQTT protocol version (default 5)
  --username USER      user name; password from --password or EDGEBUS_PASSWORD
  --password PASS
  --client-id ID       client identifier (default: random)`

export const connectionOptions = {
  url: { type: 'string' },
  protocol: { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  'client-id': { type: 'string' },
} as const

/** Connects with MQTT.js; rejects with ECONNECT and the reason when the server cannot be reached or refuses. */
export function connect(values: Record<string, unknown>, clean = true): Promise<MqttClient> {
  const url = (values.url as string | undefined) ?? process.env.EDGEBUS_URL ?? DEFAULT_URL
  const protocol = (values.protocol as string | undefined) ?? '5'
  if (protocol !== '4' && protocol !== '5') {
    return Promise.reject(new EdgebusError('EUSAGE', `--protocol ${JSON.stringify(protocol)} is not valid: use 4 (MQTT 3.1.1) or 5 (MQTT 5.0)`))
  }
  const client = mqtt.connect(url, {
    protocolVersion: protocol === '5' ? 5 : 4,
    clean,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    clientId: values['client-id'] as string | undefined,
    username: values.username as string | undefined,
    password: (values.password as string | undefined) ?? process.env.EDGEBUS_PASSWORD,
  })
  return new Promise((resolve, reject) => {
    const fail = (err: Error): void => {
      client.end(true)
      reject(new EdgebusError('ECONNECT', `cannot connect to ${url}: ${err.message}`, { url }))
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
