import net from 'node:net'

/** Hand-encoded MQTT packets, for tests that need exact bytes or misbehaving clients. */
export function connectPacket(clientId: string, opts: { keepalive?: number; version?: 4 | 5; clean?: boolean } = {}): Buffer {
  const id = Buffer.from(clientId)
  const version = opts.version ?? 4
  const props = version === 5 ? Buffer.from([0]) : Buffer.alloc(0)
  const body = Buffer.concat([
    Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, version, opts.clean === false ? 0 : 2, 0, opts.keepalive ?? 0]),
    props,
    Buffer.from([id.length >> 8, id.length & 0xff]),
    id,
  ])
  return Buffer.concat([Buffer.from([0x10]), varint(body.length), body])
}

export function publishPacket(topic: string, payload: string | Buffer, version: 4 | 5 = 4): Buffer {
  const t = Buffer.from(topic)
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload
  const props = version === 5 ? Buffer.from([0]) : Buffer.alloc(0)
  const body = Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, props, p])
  return Buffer.concat([Buffer.from([0x30]), varint(body.length), body])
}

export function subscribePacket(filter: string, qos: 0 | 1 | 2, messageId = 1, version: 4 | 5 = 4): Buffer {
  const f = Buffer.from(filter)
  const props = version === 5 ? Buffer.from([0]) : Buffer.alloc(0)
  const body = Buffer.concat([Buffer.from([messageId >> 8, messageId & 0xff]), props, Buffer.from([f.length >> 8, f.length & 0xff]), f, Buffer.from([qos])])
  return Buffer.concat([Buffer.from([0x82]), varint(body.length), body])
}

export function varint(n: number): Buffer {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return Buffer.from(out)
}

/** A raw TCP connection that records what it receives and when it closed. */
export interface RawClient {
  socket: net.Socket
  received: Buffer[]
  closed: Promise<void>
  isClosed(): boolean
  /** Resolves when the concatenated input contains `bytes`. */
  waitForBytes(bytes: Buffer, timeoutMs?: number): Promise<void>
}

export function rawConnect(port: number): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    const received: Buffer[] = []
    let closedFlag = false
    const closed = new Promise<void>((r) => socket.once('close', () => { closedFlag = true; r() }))
    socket.on('data', (d) => received.push(d))
    socket.on('error', () => {})
    socket.once('connect', () => resolve({
      socket,
      received,
      closed,
      isClosed: () => closedFlag,
      waitForBytes(bytes, timeoutMs = 3000) {
        return new Promise((res, rej) => {
          const start = Date.now()
          const poll = (): void => {
            if (Buffer.concat(received).includes(bytes)) return res()
            if (Date.now() - start > timeoutMs) return rej(new Error(`did not receive ${bytes.toString('hex')}; got ${Buffer.concat(received).toString('hex').slice(0, 200)}`))
            setTimeout(poll, 10)
          }
          poll()
        })
      },
    }))
    socket.once('error', reject)
  })
}

export const CONNACK_OK = Buffer.from([0x20, 0x02, 0x00, 0x00])
