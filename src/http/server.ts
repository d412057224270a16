import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { TlsOptions } from 'node:tls'
import type { Duplex } from 'node:stream'
import { EdgebusError, isEdgebusError, type ErrorCode } from '../core/errors.ts'
import type { Logger } from '../core/log.ts'
import { jsonTooDeep, MAX_JSON_DEPTH } from '../core/json-depth.ts'
import { allowOrigin, answerOptions, type CorsPolicy } from './cors.ts'
import { checkQuery } from './query.ts'

/** A handler for WebSocket upgrades on one path. */
export interface UpgradeHandler {
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
}

export type RouteHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>

/**
 * The HTTP listener: plain node:http, exact-path routes, WebSocket upgrades by path.
 * Routes are registered by the layers that own them (health here, API and dashboard later).
 */
export class HttpFront {
  readonly server: Server
  readonly #routes = new Map<string, RouteHandler>()
  readonly #prefixes: Array<[string, RouteHandler]> = []
  readonly #upgrades = new Map<string, UpgradeHandler>()
  readonly #log: Logger
  readonly #cors: CorsPolicy | null

  /**
   * With `https` (node:https, loaded only then) and its options, the listener serves HTTPS (and WSS).
   * `cors`: the page origins whose browsers may call the API (http.cors), or null for none.
   */
  constructor(log: Logger, https: { module: typeof import('node:https'); options: TlsOptions } | null = null, cors: CorsPolicy | null = null) {
    this.#log = log
    this.#cors = cors
    const handle = (req: IncomingMessage, res: ServerResponse): void => this.#handle(req, res)
    this.server = https === null ? createServer(handle) : https.module.createServer(https.options, handle)
    this.server.on('upgrade', (req, socket, head) => this.#upgrade(req, socket, head))
    // not a proxy: say so (RFC 9110 §15.5.6 wants the Allow list) instead of node's silent close
    this.server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      socket.on('error', () => socket.destroy()) // the socket is ours now: its errors too
      if (socket.writable) socket.end('HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, POST, PUT, DELETE\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
      else socket.destroy()
    })
    this.server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n')
    })
  }

  /**
   * An exact-path route. `query`: the parameters it reads (others are refused with EHTTP_QUERY,
   * `token` is always allowed); null for a page that takes any (its links may carry their own).
   */
  route(method: string, path: string, handler: RouteHandler, query: readonly string[] | null = []): void {
    this.#routes.set(`${method} ${path}`, query === null ? handler : (req, res, url) => {
      checkQuery(url, query)
      return handler(req, res, url)
    })
  }

  /** A handler for every path under `prefix` (it dispatches on method and the rest itself). */
  prefix(prefix: string, handler: RouteHandler): void {
    this.#prefixes.push([prefix, handler])
  }

  upgrade(path: string, handler: UpgradeHandler): void {
    this.#upgrades.set(path, handler)
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = requestUrl(req)
    if (url === null) {
      sendJson(res, 400, { error: { code: 'EUSAGE', message: `the request target ${JSON.stringify(String(req.url).slice(0, 200))} is not a valid path` } })
      return
    }
    // issue 20: CORS for pages on other origins; OPTIONS answered; HEAD is GET without the body (node drops it)
    allowOrigin(this.#cors, req, res)
    if (req.method === 'OPTIONS') return answerOptions(this.#cors, req, res)
    const handler = this.#routes.get(`${req.method === 'HEAD' ? 'GET' : req.method} ${url.pathname}`) ??
      this.#prefixes.find(([p]) => url.pathname === p || url.pathname.startsWith(p + '/'))?.[1]
    if (!handler) {
      sendJson(res, 404, { error: { code: 'ENOTFOUND', message: `no route for ${req.method} ${url.pathname}` } })
      return
    }
    // async: a handler that throws before its first await is answered too, never a crash
    ;(async () => handler(req, res, url))().catch((err: Error) => {
      // a request whose body we did not read to the end cannot be followed on this connection
      if (!req.complete) res.setHeader('connection', 'close')
      if (isEdgebusError(err)) {
        if (!res.headersSent) {
          // RFC 9110 §11.6.1: a 401 says which schemes would work
          if (err.code.startsWith('EAUTH')) res.setHeader('www-authenticate', 'Bearer, Basic realm="edgebus"')
          sendJson(res, statusOf(err.code), { error: { code: err.code, message: err.message } })
        }
        return
      }
      // a client that went away mid-request is not the server's failure
      if (req.destroyed || (err as NodeJS.ErrnoException).code === 'ECONNRESET' || err.message === 'aborted') {
        this.#log.debug({ err: err.message, path: url.pathname }, 'http client went away')
        return
      }
      if (err instanceof RangeError) {
        // too deep to handle (a hostile body): the client's fault, not ours
        if (!res.headersSent) sendJson(res, 400, { error: { code: 'EHTTP_BODY', message: 'the request is nested too deeply' } })
        return
      }
      this.#log.error({ err: err.message, path: url.pathname }, 'http handler failed')
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'EINTERNAL', message: 'internal error' } })
      else res.destroy()
    })
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = requestUrl(req)?.pathname ?? ''
    const handler = this.#upgrades.get(path)
    if (!handler) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n')
      return
    }
    handler.handleUpgrade(req, socket, head)
  }
}

/** The request's URL, or null when its target is not one (`//`, `http://[`…). */
function requestUrl(req: IncomingMessage): URL | null {
  try {
    return new URL(req.url ?? '/', 'http://localhost')
  } catch {
    return null
  }
}

/** decodeURIComponent that answers 400 (EUSAGE) instead of throwing on a malformed escape. */
export function decodePathPart(part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new EdgebusError('EUSAGE', `${JSON.stringify(part.slice(0, 200))} is not valid percent-encoding`)
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

/** The HTTP status for an error code: 404 for what is not there, 409 for conflicts, 400 for bad input. */
export function statusOf(code: ErrorCode): number {
  if (code.endsWith('_NOT_FOUND')) return 404
  if (code.startsWith('EAUTH')) return 401
  if (code === 'EACL_DENIED') return 403
  if (code === 'ESTREAM_EXISTS' || code === 'ESTREAM_CONFIGURED' || code === 'ESTREAM_OVERLAP' || code === 'ECONSUMER_IN_USE' || code === 'ECONSUMER_CONFIGURED') return 409
  if (code === 'EUSER_EXISTS' || code === 'EUSER_CONFIGURED' || code === 'EUSER_AUTH_OFF') return 409 // issue 20
  if (code.startsWith('EJOURNAL') || code === 'ECONSUMER_IO' || code === 'ECLUSTER_RETAINED' || code === 'ECLUSTER_LINK') return 503
  if (code === 'EPACKET_TOO_LARGE') return 413
  if (code === 'EHTTP_METHOD') return 405
  return 400
}

/** Reads a request body of at most `limit` bytes (`tooLarge` is the error code past it). */
export async function readBody(req: IncomingMessage, limit: number, tooLarge: 'EHTTP_BODY' | 'EPACKET_TOO_LARGE' = 'EHTTP_BODY'): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) throw new EdgebusError(tooLarge, `the request body is over ${limit} bytes`)
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

/** Reads a JSON request body (at most `limit` bytes); EHTTP_BODY when it is too large or not JSON. */
export async function readJsonBody(req: IncomingMessage, limit = 1024 * 1024): Promise<unknown> {
  const text = (await readBody(req, limit)).toString('utf8')
  if (text.trim() === '') return {}
  if (jsonTooDeep(text)) throw new EdgebusError('EHTTP_BODY', `request body nests deeper than ${MAX_JSON_DEPTH} levels`)
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new EdgebusError('EHTTP_BODY', `request body is not valid JSON: ${(err as Error).message}`)
  }
}
