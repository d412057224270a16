/**
 * What the server sends in the NATS client protocol ("Client Protocol": INFO, MSG, HMSG, +OK,
 * -ERR, PING, PONG). Message heads are strings: the connection writes them into its output buffer
 * beside the payload bytes, without a Buffer per message.
 */

/** `MSG <subject> <sid> [reply-to] <#bytes>\r\n` */
export function msgHead(subject: string, sid: string, reply: string | null, bytes: number): string {
  return reply === null ? `MSG ${subject} ${sid} ${bytes}\r\n` : `MSG ${subject} ${sid} ${reply} ${bytes}\r\n`
}

/** `HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>\r\n` */
export function hmsgHead(subject: string, sid: string, reply: string | null, headerBytes: number, totalBytes: number): string {
  return reply === null
    ? `HMSG ${subject} ${sid} ${headerBytes} ${totalBytes}\r\n`
    : `HMSG ${subject} ${sid} ${reply} ${headerBytes} ${totalBytes}\r\n`
}

export const OK = Buffer.from('+OK\r\n')
export const PING = Buffer.from('PING\r\n')
export const PONG = Buffer.from('PONG\r\n')
export const CRLF = Buffer.from('\r\n')

/** `-ERR '<message>'\r\n`: clients match the message text (e.g. 'Authorization Violation'). */
export function errLine(message: string): Buffer {
  return Buffer.from(`-ERR '${message.replace(/[\r\n']/g, ' ')}'\r\n`)
}

export interface ServerInfo {
  server_id: string
  server_name: string
  version: string
  proto: 1
  go: string
  host: string
  port: number
  headers: true
  max_payload: number
  client_id: number
  auth_required?: boolean
  tls_required?: boolean
  tls_available?: boolean
  client_ip?: string
}

/** `INFO {json}\r\n` */
export function infoLine(info: ServerInfo): Buffer {
  return Buffer.from(`INFO ${JSON.stringify(info)}\r\n`)
}
