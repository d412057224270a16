import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { ServerOptions, WebSocket, WebSocketServer } from 'ws'

/**
 * A WebSocket server made on the first upgrade: `ws` (and node:https, node:tls and node:zlib
 * behind it) costs a couple of MB of RSS that a gateway without WebSocket clients need not pay.
 */
export class LazyWebSocketServer {
  readonly #options: ServerOptions
  #wss: WebSocketServer | null = null
  #loading: Promise<WebSocketServer> | null = null

  constructor(options: ServerOptions) {
    this.#options = options
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, done: (ws: WebSocket) => void): void {
    if (this.#wss !== null) {
      this.#wss.handleUpgrade(req, socket, head, done)
      return
    }
    this.#loading ??= import('ws').then(({ WebSocketServer: Server }) => (this.#wss = new Server(this.#options)))
    this.#loading.then((wss) => wss.handleUpgrade(req, socket, head, done), () => socket.destroy())
  }

  close(): void {
    if (this.#wss === null) return
    for (const ws of this.#wss.clients) ws.terminate()
    this.#wss.close()
  }
}
