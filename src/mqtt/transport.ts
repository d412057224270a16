import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { certificateUser } from '../tls/certificate-user.ts'

/**
 * The byte pipe under one MQTT connection: a TCP socket or a WebSocket. The connection layer
 * owns all reads and writes through this interface, so batching and limits live in one place.
 */
export interface Transport {
  readonly kind: 'tcp' | 'ws'
  /** ip:port of the peer, for logs. */
  readonly remoteAddress: string
  /** The peer's IP address, for per-address limits. */
  readonly remoteIp: string
  /** The user named by a verified TLS client certificate (mTLS), else null. */
  readonly certUser: string | null
  /** Starts delivering the transport's events to `sink`. */
  attach(sink: TransportSink): void
  /** Bytes handed to the transport and not yet sent. */
  readonly bufferedAmount: number
  /** Writes; returns false once the transport wants no more until it drains. */
  write(data: Buffer): boolean
  pause(): void
  resume(): void
  /** Sends what is buffered, then closes. */
  end(): void
  destroy(): void
}

/** What a transport calls back into (implemented by ClientConnection). */
export interface TransportSink {
  onData(chunk: Buffer): void
  onDrain(): void
  onClose(): void
}

let sinkErrorLogger: ((err: unknown, remote: string) => void) | null = null

/** Where a connection's unexpected error is reported (the broker sets its logger). */
export function setSinkErrorLogger(fn: (err: unknown, remote: string) => void): void {
  sinkErrorLogger = fn
}

export function onSinkError(err: unknown, remote: string): void {
  if (sinkErrorLogger !== null) sinkErrorLogger(err, remote)
  else process.stderr.write(`edgebus: connection ${remote} failed: ${(err as Error)?.stack ?? String(err)}\n`)
}

/** Above this many bytes buffered in the socket we stop writing and wait for 'drain'. */
const SOCKET_HIGH_WATER = 256 * 1024

/** The connection a socket feeds (one set of socket listeners for all sockets: no closures per connection). */
const SINK = Symbol('edgebus.sink')
type SinkSocket = Socket & { [SINK]: TransportSink }

function onSocketData(this: SinkSocket, chunk: Buffer): void {
  try {
    this[SINK].onData(chunk)
  } catch (err) {
    // a bug met by one client's bytes ends that connection, never the process
    onSinkError(err, peerName(this))
    this.destroy()
  }
}
/** `ip:port` of a socket's peer (Node keeps it once read, also after the socket closed). */
function peerName(socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`
}
function onSocketDrain(this: SinkSocket): void { this[SINK].onDrain() }
function onSocketClose(this: SinkSocket): void { this[SINK].onClose() }
// errors (ECONNRESET, EPIPE) end in 'close'; the connection logs the reason there
function onSocketError(): void {}

export class TcpTransport implements Transport {
  readonly kind = 'tcp'
  readonly remoteIp: string
  readonly certUser: string | null
  readonly #socket: Socket

  constructor(socket: Socket) {
    this.#socket = socket
    this.remoteIp = socket.remoteAddress ?? '?'
    this.certUser = 'encrypted' in socket ? certificateUser(socket as TLSSocket) : null
    // Without TCP_NODELAY, request/ack round trips stall on Nagle plus delayed ACKs.
    socket.setNoDelay(true)
  }

  get remoteAddress(): string {
    return peerName(this.#socket)
  }

  attach(sink: TransportSink): void {
    const socket = this.#socket as SinkSocket
    socket[SINK] = sink
    socket.on('data', onSocketData)
    socket.on('drain', onSocketDrain)
    socket.on('close', onSocketClose)
    socket.on('error', onSocketError)
  }

  get bufferedAmount(): number {
    return this.#socket.writableLength
  }

  write(data: Buffer): boolean {
    if (this.#socket.destroyed) return false
    this.#socket.write(data)
    return this.#socket.writableLength < SOCKET_HIGH_WATER
  }

  pause(): void { this.#socket.pause() }
  resume(): void { this.#socket.resume() }
  end(): void { this.#socket.end() }
  destroy(): void { this.#socket.destroy() }
}
