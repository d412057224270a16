import { isEdgebusError } from '../core/errors.ts'

/**
 * The answer to a NATS publish with a reply subject that a stream captured, shaped like
 * JetStream's publish ack so nats.js/nats.go `js.publish()`-style code can read it:
 * `{"stream":"<name>","seq":N}`, `"duplicate":true` for a repeated Nats-Msg-Id, or
 * `{"error":{"code":...,"description":...},"stream":"<name>"}` when the stream refused it.
 */
export function publishAck(stream: string, appended: { seq: number; duplicate: boolean }): Buffer {
  return Buffer.from(JSON.stringify(appended.duplicate ? { stream, seq: appended.seq, duplicate: true } : { stream, seq: appended.seq }))
}

export function publishAckError(stream: string, reason: unknown): Buffer {
  const code = isEdgebusError(reason) ? reason.code : 'ESTREAM_WRITE'
  const message = reason instanceof Error ? reason.message : String(reason)
  // 503 as JetStream answers when it cannot store; err_code carries edgebus' stable code
  return Buffer.from(JSON.stringify({ error: { code: 503, err_code: code, description: message }, stream }))
}
