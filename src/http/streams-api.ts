import { isUtf8 } from 'node:buffer'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { EdgebusError } from '../core/errors.ts'
import { parseDuration } from '../config/units.ts'
import type { StreamConsumers } from '../stream/consumer-manager.ts'
import type { StreamManager } from '../stream/stream-manager.ts'
import { replay, REPLAY_QUERY } from './replay-api.ts'
import { checkQuery } from './query.ts'
import { decodePathPart, readJsonBody, sendJson, type HttpFront } from './server.ts'
import type { HttpAuth } from './http-auth.ts'
import { ALLOW_ALL, type ClientAccess } from '../auth/acl.ts'
import { toMqttFilter } from '../subjects/mqtt-map.ts'

/**
 * /api/streams: list and create; /api/streams/<name>: info, edit (PUT), delete;
 * /api/streams/<name>/purge (POST); /api/streams/<name>/messages (GET, replay-api.ts). Errors answer {"error": {"code", "message"}}.
 */
export function mountStreamsApi(http: HttpFront, streams: StreamManager, auth: HttpAuth): void {
  http.prefix('/api/streams', async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const parts = url.pathname.split('/').slice(3).map(decodePathPart) // after '', 'api', 'streams'
    const method = req.method ?? 'GET'
    const who = await auth.principal(req, url)
    if (parts.length === 0) {
      checkQuery(url, [])
      if (method === 'GET') return sendJson(res, 200, { streams: streams.list() })
      if (method === 'POST') {
        const body = await readJsonBody(req)
        auth.mayManage(who, String((body as { name?: unknown } | null)?.name ?? ''))
        return sendJson(res, 201, { stream: await streams.add(body) })
      }
      throw notAllowed(method, url.pathname)
    }
    const name = parts[0] as string
    if (method !== 'GET' && !(parts[1] === 'consumers' && (parts[3] === 'next' || parts[3] === 'ack'))) auth.mayManage(who, name)
    if (parts.length === 1) {
      checkQuery(url, [])
      if (method === 'GET') return sendJson(res, 200, streams.describe(name))
      if (method === 'PUT') return sendJson(res, 200, { stream: await streams.edit(name, await readJsonBody(req)) })
      if (method === 'DELETE') {
        await streams.remove(name)
        res.writeHead(204).end()
        return
      }
      throw notAllowed(method, url.pathname)
    }
    if (parts[1] === 'consumers') {
      // pulling and acking read the stream: the same rule as a subscription to what the consumer covers
      if (parts[2] !== undefined && (parts[3] === 'next' || parts[3] === 'ack')) auth.mayReadStream(who, streams, name, { consumer: parts[2] })
      return consumersApi(req, res, url, method, parts.slice(2), streams.consumers(name), who.access)
    }
    if (parts.length === 2 && parts[1] === 'messages') {
      if (method !== 'GET') throw notAllowed(method, url.pathname)
      checkQuery(url, REPLAY_QUERY)
      const filter = url.searchParams.get('filter')
      auth.mayReadStream(who, streams, name, { filter: filter === null ? null : toMqttFilter(filter) })
      return replay(req, res, url, streams.get(name), who.access)
    }
    if (parts.length === 2 && parts[1] === 'purge') {
      if (method !== 'POST') throw notAllowed(method, url.pathname)
      checkQuery(url, [])
      return sendJson(res, 200, { purged: await streams.purge(name), stream: streams.get(name).info() })
    }
    throw new EdgebusError('ESTREAM_NOT_FOUND', `no API at ${url.pathname}`)
  })
}

/**
 * /api/streams/<s>/consumers: list (GET), create (POST); …/<c>: info (GET), delete (DELETE);
 * …/<c>/next?batch=N&wait=ms&client=id (POST): messages as NDJSON, waiting up to `wait` for the
 * first; …/<c>/ack (POST) {"ack": [seq…], "nak": [seq…], "term": [seq…]}.
 */
async function consumersApi(req: IncomingMessage, res: ServerResponse, url: URL, method: string, parts: string[], consumers: StreamConsumers, access: ClientAccess): Promise<void> {
  checkQuery(url, parts[1] === 'next' ? ['batch', 'wait', 'client'] : [])
  if (parts.length === 0) {
    if (method === 'GET') return sendJson(res, 200, { consumers: consumers.list() })
    if (method === 'POST') return sendJson(res, 201, { consumer: await consumers.add(await readJsonBody(req)) })
    throw notAllowed(method, url.pathname)
  }
  const name = parts[0] as string
  if (parts.length === 1) {
    if (method === 'GET') return sendJson(res, 200, consumers.describe(name))
    if (method === 'DELETE') {
      await consumers.remove(name)
      res.writeHead(204).end()
      return
    }
    throw notAllowed(method, url.pathname)
  }
  if (method !== 'POST') throw notAllowed(method, url.pathname)
  if (parts[1] === 'next') {
    const q = url.searchParams
    const batch = Math.min(10_000, Math.max(1, Number(q.get('batch') ?? 1) || 1))
    const wait = Math.min(60_000, waitParam(q.get('wait')))
    const got = await consumers.next(name, batch, wait, q.get('client') ?? 'http', access === ALLOW_ALL ? null : (s) => access.canReceive(s))
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' })
    res.end(got.map((d) => JSON.stringify({
      seq: d.seq, time: new Date(d.timestamp).toISOString(), subject: d.subject,
      ...(isUtf8(d.payload) ? { payload: d.payload.toString('utf8') } : { payload_base64: d.payload.toString('base64') }),
      deliveryCount: d.deliveryCount, pending: d.pending,
    }) + '\n').join(''))
    return
  }
  if (parts[1] === 'ack') {
    const raw = await readJsonBody(req)
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new EdgebusError('EHTTP_BODY', 'the body is an object like {"ack": [1, 2], "nak": [3], "term": []}')
    const body = raw as { ack?: unknown; nak?: unknown; term?: unknown }
    const { consumer } = consumers.get(name)
    const seqs = (v: unknown): number[] => (Array.isArray(v) ? v.filter((x): x is number => Number.isSafeInteger(x)) : [])
    const done = {
      acked: seqs(body.ack).filter((s) => consumer.ack(s)).length,
      naked: seqs(body.nak).filter((s) => consumer.nak(s)).length,
      termed: seqs(body.term).filter((s) => consumer.term(s)).length,
    }
    return sendJson(res, 200, done)
  }
  throw new EdgebusError('ECONSUMER_NOT_FOUND', `no API at ${url.pathname}`)
}

function notAllowed(method: string, path: string): EdgebusError {
  return new EdgebusError('EHTTP_METHOD', `${method} is not allowed on ${path}`)
}

/** `wait=`: milliseconds or a duration such as `2s` (what `consumer next --wait 2s` sends). */
function waitParam(raw: string | null): number {
  if (raw === null || raw === '') return 0
  const ms = parseDuration(raw)
  if (ms === null) throw new EdgebusError('EUSAGE', `wait=${raw.slice(0, 50)} is not valid: use milliseconds or a duration such as 2s (at most 60s)`)
  return ms
}
