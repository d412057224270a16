import { VERSION } from '../version.ts'
import type { MqttBroker } from './broker.ts'

/** What $SYS shows of each bridge (src/bridge/bridge.ts BridgeInfo has these). */
export interface SysBridges {
  list(): Array<{ name: string; state: string; url: string | null; backlog: { messages: number; bytes: number; oldestSeconds: number }; sent: number; acked: number; refused: number; received: number; reconnects: number }>
}

/**
 * The `$SYS/broker/...` topics Mosquitto users know, published every `sys.interval` and right
 * after a client subscribes to them. Not retained: they would be written to the state file (and a
 * gateway's flash) on every tick. Clients cannot publish to `$SYS` (authorizePublish).
 */
export class SysTopics {
  readonly #broker: MqttBroker
  readonly #bridges: SysBridges | null
  readonly #startedAt: number
  #timer: NodeJS.Timeout | null = null
  #soon: NodeJS.Timeout | null = null

  constructor(broker: MqttBroker, startedAt: number, intervalMs: number, bridges: SysBridges | null = null) {
    this.#broker = broker
    this.#bridges = bridges
    this.#startedAt = startedAt
    if (intervalMs <= 0) return
    this.#timer = setInterval(() => this.publish(), intervalMs)
    this.#timer.unref()
    broker.aedes.on('subscribe', (subs) => {
      if (!subs.some((s) => s.topic.startsWith('$SYS') || s.topic === '#')) return
      // a new $SYS subscriber sees the values at once, not at the next tick
      this.#soon ??= setTimeout(() => { this.#soon = null; this.publish() }, 50)
    })
  }

  /** The topics and their values now. */
  values(): Array<[string, string]> {
    const b = this.#broker
    const s = b.stats
    return [
      ['$SYS/broker/version', `edgebus ${VERSION}`],
      ['$SYS/broker/uptime', `${Math.round((Date.now() - this.#startedAt) / 1000)} seconds`],
      ['$SYS/broker/clients/connected', String(b.connections.size)],
      ['$SYS/broker/subscriptions/count', String(b.router.subscriptionCount)],
      ['$SYS/broker/messages/received', String(s.messagesIn)],
      ['$SYS/broker/messages/sent', String(s.messagesOut)],
      ['$SYS/broker/publish/messages/dropped', String(s.dropped)],
      ['$SYS/broker/bytes/received', String(s.bytesIn)],
      ['$SYS/broker/bytes/sent', String(s.bytesOut)],
      ['$SYS/broker/heap/current', String(process.memoryUsage().heapUsed)],
      ...this.#bridgeValues(),
    ]
  }

  /** issue 14: per bridge, its state and backlog: $SYS/broker/bridges/<name>/... */
  #bridgeValues(): Array<[string, string]> {
    const out: Array<[string, string]> = []
    for (const b of this.#bridges?.list() ?? []) {
      const at = `$SYS/broker/bridges/${b.name}`
      out.push(
        [`${at}/state`, b.state === 'connected' ? `connected ${b.url ?? ''}` : b.state],
        [`${at}/backlog/messages`, String(b.backlog.messages)],
        [`${at}/backlog/bytes`, String(b.backlog.bytes)],
        [`${at}/backlog/oldest`, `${b.backlog.oldestSeconds} seconds`],
        [`${at}/messages/sent`, String(b.sent)],
        [`${at}/messages/acked`, String(b.acked)],
        [`${at}/messages/refused`, String(b.refused)],
        [`${at}/messages/received`, String(b.received)],
        [`${at}/reconnects`, String(b.reconnects)],
      )
    }
    return out
  }

  publish(): void {
    for (const [topic, value] of this.values()) {
      this.#broker.publish(topic, Buffer.from(value), { qos: 0, retain: false }).catch(() => {})
    }
  }

  close(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    if (this.#soon !== null) clearTimeout(this.#soon)
  }
}
