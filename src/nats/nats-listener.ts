import { createServer, type Server, type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import type { Logger } from '../core/log.ts'
import type { MqttBroker } from '../mqtt/broker.ts'
import { VERSION } from '../version.ts'
import { errLine, type ServerInfo } from './nats-encoder.ts'
import { NatsConnection, type NatsContext } from './nats-connection.ts'

export interface NatsListenerOptions {
  /** How often the server PINGs each client (ms). */
  readonly pingInterval: number
  /** The host INFO reports. */
  readonly host: string
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

  constructor(broker: MqttBroker, log: Logger, opts: NatsListenerOptions) {
    const serverId = randomBytes(11).toString('hex').toUpperCase()
    const security = () => broker.security
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
    new NatsConnection(socket, this.#ctx, this.#nextId++)
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
