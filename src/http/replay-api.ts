import type { IncomingMessage, ServerResponse } from 'node:http'
import { EdgebusError } from '../core/errors.ts'
import type { RecordView } from '../stream/record.ts'
import type { FollowedRecord, Stream } from '../stream/stream.ts'
import { toMqttFilter } from '../subjects/mqtt-map.ts'
import { topicMatchesFilter } from '../subjects/topic.ts'
import { RecordLines } from './record-lines.ts'
import { ALLOW_ALL, type ClientAccess } from '../auth/acl.ts'

/** Lines are gathered into chunks of about this size: one write per chunk, not per message. */
const CHUNK_BYTES = 256 * 1024
const DEFAULT_LIMIT = 1000
const SSE_HEARTBEAT_MS = 15_000

/** The query parameters of GET /api/streams/<name>/messages. */
export const REPLAY_QUERY = ['from_seq', 'from_time', 'last', 'filter', 'limit', 'follow'] as const

export interface ReplayQuery {
  fromSeq: number
  filter: string | null
  /** Most messages to send (0 = no limit; with follow, history is unlimited by default). */
  limit: number
  follow: boolean
}

/**
 * Where a replay starts, from the query: `from_seq`, `from_time` (ISO 8601 or ms since the
 * epoch), `last=N` (the last N messages); the first message when none is given. An SSE client
 * that reconnects with Last-Event-ID resumes right after it.
 */
export function parseReplayQuery(url: URL, stream: Stream, lastEventId: string | undefined): ReplayQuery {
  const q = url.searchParams
  const bad = (key: string, fix: string): never => {
    throw new EdgebusError('EUSAGE', `${key}=${q.get(key) ?? ''} is not valid: ${fix}`)
  }
  const j = stream.journal
  let fromSeq = j.firstSeq
  if (lastEventId !== undefined && /^\d+$/.test(lastEventId)) fromSeq = Number(lastEventId) + 1
  else if (q.has('from_seq')) {
    const n = Number(q.get('from_seq'))
    if (!Number.isSafeInteger(n) || n < 0) bad('from_seq', 'use a sequence number')
    fromSeq = n
  } else if (q.has('from_time')) {
    const raw = q.get('from_time') as string
    const ms = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw)
    if (!Number.isFinite(ms)) bad('from_time', 'use an ISO 8601 time or milliseconds since 1970')
    fromSeq = j.seqForTime(ms)
  } else if (q.has('last')) {
    const n = Number(q.get('last'))
    if (!Number.isSafeInteger(n) || n < 0) bad('last', 'use a number of messages')
    fromSeq = Math.max(j.firstSeq, j.lastSeq - n + 1)
  }
  const filter = q.has('filter') ? toMqttFilter(q.get('filter') as string) : null
  const follow = ['1', 'true'].includes(q.get('follow') ?? '')
  let limit = follow ? 0 : DEFAULT_LIMIT
  if (q.has('limit')) {
    const n = Number(q.get('limit'))
    if (!Number.isSafeInteger(n) || n < 0) bad('limit', 'use a number of messages, 0 for no limit')
    limit = n
  }
  return { fromSeq, filter, limit, follow }
}

/**
 * GET /api/streams/<name>/messages: the stream's messages as NDJSON (one JSON object per line),
 * or with follow=1 as Server-Sent Events that go on with new messages as they are stored.
 */
export async function replay(req: IncomingMessage, res: ServerResponse, url: URL, stream: Stream, access: ClientAccess = ALLOW_ALL): Promise<void> {
  const readable = (subject: string): boolean => access === ALLOW_ALL || access.canReceive(subject)
  const lastEventId = req.headers['last-event-id']
  const q = parseReplayQuery(url, stream, typeof lastEventId === 'string' ? lastEventId : undefined)
  const sse = q.follow
  res.writeHead(200, {
    'content-type': sse ? 'text/event-stream' : 'application/x-ndjson',
    'cache-control': 'no-store',
    ...(sse ? { connection: 'keep-alive' } : {}),
  })
  // send the headers now: an event stream may wait long for its first event, and clients (and
  // proxies) hold the request as pending until they see a response
  res.flushHeaders()
  let closed = false
  req.once('close', () => { closed = true })
  const lines = new RecordLines(sse)

  // follow: listen before reading history, so nothing stored meanwhile is missed
  const live: FollowedRecord[] = []
  let liveDirect: ((r: FollowedRecord) => void) | null = null
  const unfollow = sse ? stream.follow((r) => (liveDirect ? liveDirect(r) : live.push(r))) : null

  let sent = 0
  let lastSeq = q.fromSeq - 1
  const flush = async (): Promise<void> => {
    if (lines.length === 0) return
    const chunk = lines.take()
    if (res.write(chunk, () => lines.recycle(chunk))) return
    await new Promise<void>((resolve) => {
      const go = (): void => {
        res.off('drain', go)
        res.off('close', go)
        resolve()
      }
      res.on('drain', go)
      res.on('close', go)
    })
  }
  let limitReached = false
  // the history: records visited in place from the read buffer, with synchronous reads in 1 MiB
  // chunks, yielding to the event loop after every 256 KiB written so other clients are served
  const visit = (rec: RecordView): boolean => {
    lastSeq = rec.seq
    if ((q.filter !== null && !topicMatchesFilter(rec.subject, q.filter)) || !readable(rec.subject)) return true
    lines.add(rec.seq, rec.timestamp, rec.subject, rec.buf, rec.payloadStart, rec.payloadEnd, rec.headers)
    if (++sent === q.limit) {
      limitReached = true
      return false
    }
    return lines.length < CHUNK_BYTES
  }
  try {
    const history = stream.journal.reader(q.fromSeq)
    while (history.read(visit) && !limitReached) {
      await flush()
      await new Promise<void>((resolve) => setImmediate(resolve))
      if (closed) break
    }
    await flush()
    if (!sse || closed || limitReached) {
      unfollow?.()
      res.end()
      return
    }
    // caught up: what came in meanwhile, then live
    const send = (r: FollowedRecord): void => {
      if (r.seq <= lastSeq || closed || res.writableEnded) return
      lastSeq = r.seq
      if ((q.filter !== null && !topicMatchesFilter(r.subject, q.filter)) || !readable(r.subject)) return
      lines.add(r.seq, r.timestamp, r.subject, r.payload, 0, r.payload.length, null)
      res.write(lines.take())
      if (q.limit > 0 && ++sent >= q.limit) { unfollow?.(); res.end() }
    }
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), SSE_HEARTBEAT_MS)
    res.once('close', () => { clearInterval(heartbeat); unfollow?.() })
    for (const r of live) send(r)
    liveDirect = send
  } catch (err) {
    unfollow?.()
    throw err
  }
}
