import { createServer, type Server } from 'node:net'
import type { MqttBroker } from './broker.ts'
import { TcpTransport } from './transport.ts'

/** The MQTT over TCP listener: every socket becomes a ClientConnection. */
export function createMqttTcpServer(broker: MqttBroker): Server {
  const server = createServer({ noDelay: true }, (socket) => {
    broker.accept(new TcpTransport(socket))
  })
  return server
}
