import type { Server as TlsServer, TlsOptions } from 'node:tls'
import type { MqttBroker } from './broker.ts'
import { TcpTransport } from './transport.ts'

/** MQTT over TLS (tls.mqttPort): the same, once the TLS handshake is done. */
export async function createMqttTlsServer(broker: MqttBroker, options: TlsOptions): Promise<TlsServer> {
  const { createServer: createTlsServer } = await import('node:tls') // loaded only with TLS
  const server = createTlsServer({ ...options, noDelay: true } as TlsOptions, (socket) => {
    broker.accept(new TcpTransport(socket))
  })
  // a failed handshake (wrong CA, plain MQTT on the TLS port) concerns that client only
  server.on('tlsClientError', (err) => broker.log.debug({ err: err.message }, 'TLS handshake failed'))
  return server
}
