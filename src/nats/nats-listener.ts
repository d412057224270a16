import { createServer, type Server, type Socket } from 'node:net'
import type { Server as TlsServer, TLSSocket, TlsOptions } from 'node:tls'
import { certificateUser } from '../tls/certificate-user.ts'
import { randomBytes } from 'node:crypto'
import type { Logger } from '../core/log.ts'
import type { MqttBroker } from '../mqtt/broker.ts'
import { VERSION } from '../version.ts'
import { errLine, infoLine, type ServerInfo } from './nats-encoder.ts'
import { NatsConnection, type NatsContext } from './nats-connection.ts'

export interface NatsListenerOptions {
  /** How often the server PINGs each client (ms). */
  readonly pingInterval: number
  /** The host INFO reports. */
  readonly host: string
  /** With TLS configured: every client upgrades after INFO (tls_required), as nats-server does. */
  readonly tls: { readonly module: typeof import('node:tls'); readonly options: TlsOptions } | null
}

/** How long a client has to finish the TLS handshake after INFO. */
const TLS_TIMEOUT = 5000

function peerKey(s: Socket): string {
  return `${s.remoteAddress}:${s.remotePort}`
}

/** nats-server's default max_control_line. */
const MAX_CONTROL_LINE = 4096
/** How long a client that must authenticate has to send CONNECT (nats-server: auth_timeout). */
const AUTH_TIMEOUT = 5000

/**
 * The NATS client protocol listener (docs/nats.md): admits connections through the same gate as
 * MQTT (limits.maxConnections, ...) and serves each with a NatsConnection.
 */
export class NatsListener {
  readonly server: Server
  readonly #ctx: NatsContext
  #port = 0
  #nextId = 1
  /** Never listens: takes the sockets that upgrade after INFO. */
  readonly #tlsServer: TlsServer | null
  /** The id each socket's INFO named, until its handshake is done (by peer address and port). */
  readonly #upgrading = new Map<string, number>()

  constructor(broker: MqttBroker, log: Logger, opts: NatsListenerOptions) {
    const serverId = randomBytes(11).toString('hex').toUpperCase()
    const security = () => broker.security
    this.#tlsServer = opts.tls === null ? null : opts.tls.module.createServer({ ...opts.tls.options, handshakeTimeout: TLS_TIMEOUT }, (secure: TLSSocket) => {
      const key = peerKey(secure)
      const id = this.#upgrading.get(key) ?? this.#nextId++
      this.#upgrading.delete(key)
      new NatsConnection(secure, this.#ctx, id, { infoSent: true, certUser: certificateUser(secure) })
    })
    this.#tlsServer?.on('tlsClientError', (err) => log.debug({ err: err.message, protocol: 'nats' }, 'TLS handshake failed'))
    this.#ctx = {
      broker,
      log,
      maxControlLine: MAX_CONTROL_LINE,
      pingInterval: opts.pingInterval,
      authTimeout: AUTH_TIMEOUT,
      connections: new Set(),
      info: (clientId: number, clientIp: string): ServerInfo => ({
        server_id: serverId,
        server_name: 'edgebus',
        version: VERSION,
        proto: 1,
        go: `node${process.versions.node}`,
        host: opts.host,
        port: this.#port,
        headers: true,
        max_payload: broker.limits.maxPacketSize,
        client_id: clientId,
        ...(security()?.required === true ? { auth_required: true } : {}),
        ...(opts.tls !== null ? { tls_required: true } : {}),
        client_ip: clientIp,
      }),
    }
    this.server = createServer((socket) => this.#accept(socket))
    this.server.on('listening', () => {
      const a = this.server.address()
      if (typeof a === 'object' && a !== null) this.#port = a.port
    })
  }

  #accept(socket: Socket): void {
    const broker = this.#ctx.broker
    const ip = socket.remoteAddress ?? '?'
    const refusal = broker.gate.admit(ip)
    if (refusal !== null) {
      broker.warnings.warn(refusal.code, { remote: ip, code: refusal.code, protocol: 'nats' }, `connection refused: ${refusal.message}`)
      socket.on('error', () => {})
      socket.end(errLine(refusal.code === 'ELIMIT_CONNECT_RATE' ? 'Connection Rate Exceeded' : 'maximum connections exceeded'))
      return
    }
    socket.once('close', () => broker.gate.release(ip))
    const id = this.#nextId++
    if (this.#tlsServer === null) {
      new NatsConnection(socket, this.#ctx, id)
      return
    }
    this.#upgrade(socket, id)
  }

  /**
   * INFO in the clear, then the client's TLS handshake on the same socket (Client Protocol, INFO
   * tls_required): the socket goes to a TLS server of our own, which verifies client certificates.
   */
  #upgrade(socket: Socket, id: number): void {
    socket.on('error', () => {})
    socket.write(infoLine(this.#ctx.info(id, socket.remoteAddress ?? '')))
    const key = peerKey(socket)
    this.#upgrading.set(key, id)
    socket.once('close', () => this.#upgrading.delete(key))
    this.#tlsServer?.emit('connection', socket)
  }

  /** A renewed certificate (SIGHUP) for new connections. */
  setTlsOptions(options: TlsOptions): void {
    this.#tlsServer?.setSecureContext(options)
  }

  get connectionCount(): number {
    return this.#ctx.connections.size
  }

  /** Stops accepting and closes every NATS connection. */
  close(): void {
    this.server.close()
    for (const c of [...this.#ctx.connections]) c.close()
  }
}
