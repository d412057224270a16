import type { StreamManager } from '../stream/stream-manager.ts'
import type { ClientAccess } from './acl.ts'

/**
 * What reading a stream covers, as subject filters: a replay's filter, a consumer's filters, or
 * the stream's subjects when either is "everything". A client may read a stream (replay it,
 * consume from it) only when it may subscribe to every one of them; each message is checked
 * again on delivery (canReceive) for rules that carve out parts. Throws ESTREAM_NOT_FOUND /
 * ECONSUMER_NOT_FOUND.
 */
export function streamReadFilters(streams: StreamManager, stream: string, what: { consumer: string } | { filter: string | null }): string[] {
  const subjects = streams.get(stream).definition.subjects
  const filters = 'consumer' in what ? streams.consumers(stream).get(what.consumer).def.filter : what.filter === null ? [] : [what.filter]
  return filters.length === 0 || filters.includes('#') ? [...subjects] : filters
}

/** The first filter of what `what` reads that the client may not subscribe to, or null when it may read it all. */
export function firstUnreadable(access: ClientAccess, streams: StreamManager, stream: string, what: { consumer: string } | { filter: string | null }): string | null {
  for (const f of streamReadFilters(streams, stream, what)) if (!access.canSubscribe(f)) return f
  return null
}
