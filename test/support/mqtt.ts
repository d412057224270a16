import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'

export interface Received {
  topic: string
  payload: string
  qos: number
  retain: boolean
  properties?: Record<string, unknown>
}

/** An MQTT.js client that records every message it gets. */
export interface TestClient {
  client: MqttClient
  messages: Received[]
  /** Resolves once at least n messages arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<Received[]>
  end(): Promise<void>
}

const open: MqttClient[] = []

export async function connectClient(url: string, opts: IClientOptions = {}): Promise<TestClient> {
  // listen before CONNACK: queued messages of a persistent session arrive right behind it
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  open.push(client)
  const messages: Received[] = []
  const waiters: Array<() => void> = []
  client.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain, properties: packet.properties as Record<string, unknown> | undefined })
    for (const w of waiters) w()
  })
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
    client.once('close', () => reject(new Error(`connection to ${url} closed before CONNACK`)))
  })
  return {
    client,
    messages,
    waitFor(n, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = (): void => { if (messages.length >= n) { clearTimeout(t); resolve(messages) } }
        const t = setTimeout(() => reject(new Error(`waited for ${n} messages, got ${messages.length}: ${messages.slice(0, 5).map((m) => `${m.topic} ${m.payload.slice(0, 40)}`).join(' | ')}`)), timeoutMs)
        waiters.push(check)
        check()
      })
    },
    end: () => client.endAsync(true),
  }
}

/** Ends every client connectClient opened (call in afterEach/afterAll). */
export async function endAllClients(): Promise<void> {
  await Promise.all(open.splice(0).map((c) => c.endAsync(true).catch(() => {})))
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
