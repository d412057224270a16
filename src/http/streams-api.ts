import type { IncomingMessage, ServerResponse } from 'node:http'
import { EdgebusError } from '../core/errors.ts'
import type { StreamManager } from '../stream/stream-manager.ts'
import { replay } from './replay-api.ts'
import { readJsonBody, sendJson, type HttpFront } from './server.ts'

/**
 * /api/streams: list and create; /api/streams/<name>: info, edit (PUT), delete;
 * /api/streams/<name>/purge (POST); /api/streams/<name>/messages (GET, replay-api.ts). Errors answer {"error": {"code", "message"}}.
 */
export function mountStreamsApi(http: HttpFront, streams: StreamManager): void {
  http.prefix('/api/streams', async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const parts = url.pathname.split('/').slice(3).map(decodeURIComponent) // after '', 'api', 'streams'
    const method = req.method ?? 'GET'
    if (parts.length === 0) {
      if (method === 'GET') return sendJson(res, 200, { streams: streams.list() })
      if (method === 'POST') return sendJson(res, 201, { stream: await streams.add(await readJsonBody(req)) })
      throw notAllowed(method, url.pathname)
    }
    const name = parts[0] as string
    if (parts.length === 1) {
      if (method === 'GET') return sendJson(res, 200, streams.describe(name))
      if (method === 'PUT') return sendJson(res, 200, { stream: await streams.edit(name, await readJsonBody(req)) })
      if (method === 'DELETE') {
        await streams.remove(name)
        res.writeHead(204).end()
        return
      }
      throw notAllowed(method, url.pathname)
    }
    if (parts.length === 2 && parts[1] === 'messages') {
      if (method !== 'GET') throw notAllowed(method, url.pathname)
      return replay(req, res, url, streams.get(name))
    }
    if (parts.length === 2 && parts[1] === 'purge') {
      if (method !== 'POST') throw notAllowed(method, url.pathname)
      return sendJson(res, 200, { purged: await streams.purge(name), stream: streams.get(name).info() })
    }
    throw new EdgebusError('ESTREAM_NOT_FOUND', `no API at ${url.pathname}`)
  })
}

function notAllowed(method: string, path: string): EdgebusError {
  return new EdgebusError('EHTTP_METHOD', `${method} is not allowed on ${path}`)
}
