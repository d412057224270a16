import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { WebSocket } from 'ws'
import { LazyWebSocketServer } from './lazy-wss.ts'
import type { MqttBroker } from '../mqtt/broker.ts'
import { onSinkError, type Transport, type TransportSink } from '../mqtt/transport.ts'
import type { TLSSocket } from 'node:tls'
import { certificateUser } from '../tls/certificate-user.ts'

/** Above this many bytes buffered in the WebSocket we stop writing and poll for the drain. */
const WS_HIGH_WATER = 256 * 1024

/**
 * MQTT over WebSocket: binary messages carry MQTT bytes; one message may hold several packets or
 * part of one, so the bytes go through the same framing as TCP.
 */
class WsTransport implements Transport {
  readonly kind = 'ws'
  readonly remoteAddress: string
  readonly remoteIp: string
  readonly certUser: string | null
  readonly #ws: WebSocket
  #sink: TransportSink | null = null
  #drainTimer: NodeJS.Timeout | null = null

  constructor(ws: WebSocket, req: IncomingMessage) {
    this.#ws = ws
    this.remoteIp = req.socket.remoteAddress ?? '?'
    this.remoteAddress = `${this.remoteIp}:${req.socket.remotePort ?? 0}`
    this.certUser = 'encrypted' in req.socket ? certificateUser(req.socket as TLSSocket) : null
    req.socket.setNoDelay(true)
  }

  attach(sink: TransportSink): void {
    this.#sink = sink
    const ws = this.#ws
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      // [MQTT-6.0.0-1] MQTT control packets must be sent in binary frames: close on text frames
      if (!isBinary) { ws.close(1003, 'MQTT needs binary frames'); return }
      try {
        sink.onData(data)
      } catch (err) {
        onSinkError(err, this.remoteAddress) // that connection ends, not the process
        ws.terminate()
      }
    })
    ws.on('close', () => {
      if (this.#drainTimer) clearInterval(this.#drainTimer)
      sink.onClose()
    })
    ws.on('error', () => {})
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount
  }

  write(data: Buffer): boolean {
    if (this.#ws.readyState !== this.#ws.OPEN) return false
    this.#ws.send(data, { binary: true })
    if (this.#ws.bufferedAmount < WS_HIGH_WATER) return true
    // ws has no 'drain' event of its own: watch the buffered amount fall
    this.#drainTimer ??= setInterval(() => {
      if (this.#ws.bufferedAmount < WS_HIGH_WATER / 2 && this.#drainTimer) {
        clearInterval(this.#drainTimer)
        this.#drainTimer = null
        this.#sink?.onDrain()
      }
    }, 10)
    return false
  }

  pause(): void { this.#ws.pause() }
  resume(): void { this.#ws.resume() }
  end(): void { this.#ws.close(1000) }
  destroy(): void { this.#ws.terminate() }
}

/** Accepts WebSocket upgrades for MQTT (subprotocol 'mqtt'; 'mqttv3.1' for old clients). */
export class MqttWebSocketEndpoint {
  readonly #wss: LazyWebSocketServer
  readonly #broker: MqttBroker

  constructor(broker: MqttBroker) {
    this.#broker = broker
    this.#wss = new LazyWebSocketServer({
      noServer: true,
      maxPayload: broker.limits.maxPacketSize + 8,
      perMessageDeflate: false,
      handleProtocols: (protocols) => {
        // [MQTT-6.0.0-3] the subprotocol is 'mqtt' ('mqttv3.1' for MQTT 3.1 clients)
        for (const p of ['mqtt', 'mqttv3.1']) if (protocols.has(p)) return p
        return false
      },
    })
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      this.#broker.accept(new WsTransport(ws, req), req)
    })
  }

  close(): void {
    this.#wss.close()
  }
}
