import { EdgebusError, isEdgebusError } from '../core/errors.ts'
import { checkQuery } from './query.ts'
import type { MqttBroker } from '../mqtt/broker.ts'
import { MSG_ID_PROPERTY } from '../stream/stream.ts'
import { toMqttTopic } from '../subjects/mqtt-map.ts'
import { decodePathPart, readBody, sendJson, statusOf, type HttpFront } from './server.ts'
import type { HttpAuth } from './http-auth.ts'

/**
 * POST /api/publish/<subject>: the body is the payload. `?qos=0|1|2` (default 1) and `?retain=1`;
 * a `Msg-Id` header is the stream dedupe id, `Content-Type` the MQTT 5 content type. The answer
 * names every stream that stored the message, with its sequence, once they hold it — so webhooks
 * and scripts get the same promise as a QoS 1 publisher.
 */
export function mountPublishApi(http: HttpFront, broker: MqttBroker, auth: HttpAuth): void {
  http.prefix('/api/publish', async (req, res, url) => {
    if (req.method !== 'POST') throw new EdgebusError('EHTTP_METHOD', `use POST to publish (got ${req.method ?? '?'})`)
    checkQuery(url, ['qos', 'retain'])
    const raw = decodePathPart(url.pathname.slice('/api/publish/'.length))
    if (raw === '') throw new EdgebusError('ESUBJECT_INVALID', 'POST /api/publish/<subject>: the subject is missing')
    const subject = toMqttTopic(raw)
    if (subject.startsWith('$SYS')) throw new EdgebusError('EACL_DENIED', '$SYS topics are published by the server only')
    if (!broker.topicWithinLimits(subject)) throw new EdgebusError('ELIMIT_TOPIC', 'the subject is over limits.maxTopicLength or limits.maxTopicLevels')
    auth.mayPublish(await auth.principal(req, url), subject)
    const qos = Number(url.searchParams.get('qos') ?? 1)
    if (qos !== 0 && qos !== 1 && qos !== 2) throw new EdgebusError('EUSAGE', `qos=${url.searchParams.get('qos') ?? ''} is not valid: use 0, 1 or 2`)
    const retain = ['1', 'true'].includes(url.searchParams.get('retain') ?? '')
    const payload = await readBody(req, broker.limits.maxPacketSize, 'EPACKET_TOO_LARGE')
    const properties: Record<string, unknown> = {}
    const msgId = req.headers['msg-id']
    if (typeof msgId === 'string' && msgId !== '') properties.userProperties = { [MSG_ID_PROPERTY]: msgId }
    const type = req.headers['content-type']
    if (typeof type === 'string' && type !== '') properties.contentType = type
    let results: Awaited<ReturnType<MqttBroker['publish']>>
    try {
      results = await broker.publish(subject, payload, { qos: qos as 0 | 1 | 2, retain, ...(Object.keys(properties).length > 0 ? { properties } : {}) })
    } catch (err) {
      // the retained store or a session queue could not keep it (a full disk): 507 Insufficient Storage
      if (!isEdgebusError(err) || !err.code.startsWith('EPERSIST')) throw err
      return sendJson(res, 507, { subject, error: { code: err.code, message: err.message } })
    }
    const stored = results.map(({ stream, result }) => result.status === 'fulfilled'
      ? { stream, seq: (result.value as { seq: number }).seq, duplicate: (result.value as { duplicate: boolean }).duplicate }
      : { stream, error: errorOf(result.reason) })
    const refused = stored.find((s) => 'error' in s) as { error: { code: string } } | undefined
    // a store that refused (a limit, a full disk, a journal error): 507 Insufficient Storage
    const status = refused === undefined ? 200 : isStoreRefusal(refused.error.code) ? 507 : statusOf(refused.error.code as never)
    sendJson(res, status, { subject, stored })
  })
}

function errorOf(err: unknown): { code: string; message: string } {
  return isEdgebusError(err) ? { code: err.code, message: err.message } : { code: 'EJOURNAL_IO', message: String((err as Error)?.message ?? err) }
}

function isStoreRefusal(code: string): boolean {
  return code === 'ESTREAM_LIMIT' || code.startsWith('EJOURNAL') || code.startsWith('EPERSIST')
}
