import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { StartedEdgebus } from '../support/edgebus.ts'

/**
 * Publishes `n` QoS 1 messages to `url` as fast as the server acknowledges them (up to `window`
 * unacknowledged at a time, under edgebus' Receive Maximum of 1024). Message i goes to
 * topicOf(i) with payload `<i>`; resolves once every PUBACK arrived.
 */
export async function publishMany(url: string, n: number, topicOf: (i: number) => string, opts: { window?: number; payload?: (i: number) => string | Buffer; properties?: (i: number) => Record<string, unknown> } = {}): Promise<void> {
  const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, clean: true })
  await new Promise<void>((resolve, reject) => { client.once('connect', () => resolve()); client.once('error', reject) })
  const window = opts.window ?? 1000
  let next = 0
  let acked = 0
  try {
    await new Promise<void>((resolve, reject) => {
      const pump = (): void => {
        while (next < n && next - acked < window) {
          const i = next++
          const props = opts.properties?.(i)
          client.publish(topicOf(i), opts.payload?.(i) ?? String(i), { qos: 1, ...(props ? { properties: props } : {}) }, (err) => {
            if (err) { reject(err); return }
            if (++acked === n) resolve()
            else pump()
          })
        }
      }
      client.once('close', () => reject(new Error(`publisher lost its connection after ${acked} of ${n} acks`)))
      pump()
      if (n === 0) resolve()
    })
  } finally {
    client.removeAllListeners('close')
    await client.endAsync(true)
  }
}

/** A recorded message at a remote. */
export interface Got { topic: string; payload: string; props: Record<string, unknown> | undefined; expiry: number | undefined }

/**
 * An MQTT subscriber at a remote that survives the remote's restarts: a persistent session
 * (clean false) re-established by MQTT.js' reconnect, so what the remote queued while we were
 * away arrives too. Records every message, duplicates included.
 */
export async function remoteSubscriber(url: string, filter: string, opts: IClientOptions = {}): Promise<{ client: MqttClient; got: Got[]; end(): Promise<void> }> {
  const client = mqtt.connect(url, { protocolVersion: 5, clean: false, clientId: `sub-${Math.random().toString(16).slice(2)}`, properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 100, ...opts })
  const got: Got[] = []
  client.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), props: packet.properties?.userProperties as Record<string, unknown> | undefined, expiry: packet.properties?.messageExpiryInterval }))
  await new Promise<void>((resolve, reject) => { client.once('connect', () => resolve()); client.once('error', reject) })
  await client.subscribeAsync(filter, { qos: 1 })
  return { client, got, end: () => client.endAsync(true) }
}

/**
 * Per-subject order and duplicates of what arrived, each payload being the publisher's index:
 * `outOfOrder` counts first arrivals of an index below one already seen on the same subject
 * (a resend of an earlier message is a duplicate, not disorder).
 */
export function deliveryReport(got: ReadonlyArray<{ topic: string; payload: string }>): { unique: number; duplicates: number; outOfOrder: number } {
  const seen = new Set<string>()
  const highest = new Map<string, number>()
  let duplicates = 0
  let outOfOrder = 0
  for (const g of got) {
    const key = `${g.topic} ${g.payload}`
    if (seen.has(key)) { duplicates++; continue }
    seen.add(key)
    const i = Number(g.payload)
    const h = highest.get(g.topic) ?? -1
    if (i < h) outOfOrder++
    else highest.set(g.topic, i)
  }
  return { unique: seen.size, duplicates, outOfOrder }
}

export interface BridgeView {
  name: string
  state: string
  url: string | null
  backlog: { messages: number; bytes: number; oldestSeconds: number }
  inFlight: number
  sent: number
  acked: number
  refused: number
  deadLettered: number
  loopsPrevented: number
  received: number
  inSubscribed: boolean
  remoteDuplicates: number
  reconnects: number
  watchdogReconnects: number
  expired: number
  lastError: string | null
}

export async function bridgeInfo(srv: StartedEdgebus, name: string): Promise<BridgeView> {
  const res = await fetch(`${srv.httpUrl}/api/bridges/${name}`)
  if (res.status !== 200) throw new Error(`GET /api/bridges/${name}: ${res.status} ${await res.text()}`)
  return ((await res.json()) as { bridge: BridgeView }).bridge
}
