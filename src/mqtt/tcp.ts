import { createServer, type Server } from 'node:net'
import { createServer as createTlsServer, type Server as TlsServer, type TlsOptions } from 'node:tls'
import type { MqttBroker } from './broker.ts'
import { TcpTransport } from './transport.ts'

/** The MQTT over TCP listener: every socket becomes a ClientConnection. */
export function createMqttTcpServer(broker: MqttBroker): Server {
  const server = createServer({ noDelay: true }, (socket) => {
    broker.accept(new TcpTransport(socket))
  })
  return server
}

/** MQTT over TLS (tls.mqttPort): the same, once the TLS handshake is done. */
export function createMqttTlsServer(broker: MqttBroker, options: TlsOptions): TlsServer {
  const server = createTlsServer({ ...options, noDelay: true } as TlsOptions, (socket) => {
    broker.accept(new TcpTransport(socket))
  })
  // a failed handshake (wrong CA, plain MQTT on the TLS port) concerns that client only
  server.on('tlsClientError', (err) => broker.log.debug({ err: err.message }, 'TLS handshake failed'))
  return server
}
