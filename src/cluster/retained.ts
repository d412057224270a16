import { createInbox, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node'
import { EdgebusError } from '../core/errors.ts'
import type { Logger } from '../core/log.ts'

/**
 * Retained messages of the cluster in one JetStream stream (a KV bucket in all but name: one
 * message per subject, the last one kept, `cluster.replicas` copies by Raft), spoken to with the
 * JetStream API over core NATS requests so that @nats-io/jetstream stays out of the bundle.
 *
 * A retained publish is put here (the publisher's PUBACK waits for JetStream's ack) and every
 * other node also receives the put as a plain subscriber of `<prefix>r.>`, stores it in its own
 * retained store and delivers it to its subscribers. A node that starts reads the whole stream
 * (last message per subject) before it listens for clients.
 */
export class RetainedReplica {
  readonly stream: string
  readonly #filter: string
  stored = 0
  failed = 0

  constructor(private readonly nc: NatsConnection, name: string, prefix: string, private readonly log: Logger) {
    this.stream = `EB_${name}_RETAINED`
    this.#filter = `${prefix}r.>`
  }

  /** Makes the stream (once; the same config again is a no-op for JetStream). */
  async ensure(replicas: number): Promise<void> {
    const config = {
      name: this.stream, subjects: [this.#filter], retention: 'limits', storage: 'file', num_replicas: replicas,
      max_msgs_per_subject: 1, discard: 'old', allow_direct: true,
    }
    // a NATS cluster that just started has no JetStream meta leader for a few seconds (10008): wait for one
    const until = Date.now() + 20_000
    let r: Record<string, unknown>
    for (;;) {
      r = await this.#api(`$JS.API.STREAM.CREATE.${this.stream}`, { ...config }).catch((err: Error) => ({ error: { description: err.message, err_code: -1 } }))
      const c = (r.error as { err_code?: number } | undefined)?.err_code
      if ((c !== 10008 && c !== -1) || Date.now() > until) break
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    const code = (r.error as { err_code?: number } | undefined)?.err_code
    // 10058: the stream exists (made by another node, maybe with other replicas): use it
    if (r.error !== undefined && code !== 10058) throw new EdgebusError('ECLUSTER_RETAINED', `the cluster's retained stream ${this.stream} cannot be made: ${(r.error as { description?: string }).description ?? JSON.stringify(r.error)}`, { stream: this.stream })
  }

  /** Stores one retained message (an empty payload is the deletion, kept as the last message). */
  async put(subject: string, payload: Uint8Array, headers: MsgHdrs): Promise<void> {
    try {
      const reply = await this.nc.request(subject, payload, { headers, timeout: 5_000 })
      const ack = JSON.parse(new TextDecoder().decode(reply.data)) as { error?: { description?: string } }
      if (ack.error !== undefined) throw new Error(ack.error.description ?? 'refused')
      this.stored++
    } catch (err) {
      this.failed++
      throw new EdgebusError('ECLUSTER_RETAINED', `retained message not stored in the cluster: ${(err as Error).message}`, { subject })
    }
  }

  /** Every retained message now in the stream, through an ephemeral push consumer (last per subject). */
  async readAll(onMessage: (msg: Msg) => void): Promise<number> {
    const inbox = createInbox()
    let seen = 0
    let expected = -1
    let done: () => void = () => {}
    const finished = new Promise<void>((resolve) => { done = resolve })
    const sub = this.nc.subscribe(inbox, {
      callback: (err, msg) => {
        if (err !== null) return
        if (msg.data.length === 0 && msg.headers?.code !== undefined && msg.headers.code >= 100) return // idle heartbeat / flow control
        seen++
        onMessage(msg)
        if (expected >= 0 && seen >= expected) done()
      },
    })
    try {
      const r = await this.#api(`$JS.API.CONSUMER.CREATE.${this.stream}`, {
        stream_name: this.stream,
        config: { deliver_policy: 'last_per_subject', ack_policy: 'none', deliver_subject: inbox, filter_subject: this.#filter, mem_storage: true, num_replicas: 1, inactive_threshold: 10_000_000_000 },
      })
      if (r.error !== undefined) throw new EdgebusError('ECLUSTER_RETAINED', `the cluster's retained messages cannot be read: ${(r.error as { description?: string }).description}`, { stream: this.stream })
      expected = (r.num_pending as number | undefined) ?? 0
      if (seen >= expected) done()
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, 10_000).unref())
      await Promise.race([finished, timeout])
      if (seen < expected) this.log.warn({ stream: this.stream, read: seen, expected, code: 'ECLUSTER_RETAINED' }, 'not every retained message of the cluster was read in 10 s; the rest arrive as they are set again')
      const name = (r.name as string | undefined) ?? ''
      if (name !== '') void this.#api(`$JS.API.CONSUMER.DELETE.${this.stream}.${name}`, {}).catch(() => {})
      return seen
    } finally {
      sub.unsubscribe()
    }
  }

  async #api(subject: string, body: unknown): Promise<Record<string, unknown>> {
    const reply = await this.nc.request(subject, JSON.stringify(body), { timeout: 5_000 })
    return JSON.parse(new TextDecoder().decode(reply.data)) as Record<string, unknown>
  }
}
