import type { Refusal } from '../limits/connection-gate.ts'
import type { Transport, TransportSink } from './transport.ts'

/** How long a refused connection may take to send its CONNECT before it is simply closed (at the open-file limit: less). */
const CONNECT_WAIT_MS = 5000
const CONNECT_WAIT_FILES_MS = 1000

/**
 * A connection over a limit, served without aedes (cheap under a connection storm): it reads the
 * CONNECT only to learn the protocol version, answers CONNACK with the reason and closes.
 * MQTT 5: 0x9F Connection rate exceeded or 0x97 Quota exceeded (connections, open files); MQTT 3.1.1: 0x03 Server unavailable.
 * Returns a function that gives up waiting for the CONNECT and closes.
 */
export function refuseConnection(transport: Transport, refusal: Refusal, onClosed: () => void = () => {}): () => void {
  let got = Buffer.alloc(0)
  let done = false
  const timer = setTimeout(() => finish(null), refusal.code === 'ELIMIT_FILES' ? CONNECT_WAIT_FILES_MS : CONNECT_WAIT_MS)
  timer.unref()
  const finish = (connack: Buffer | null): void => {
    if (done) return
    done = true
    clearTimeout(timer)
    if (connack !== null) transport.write(connack)
    transport.end()
    // at the open-file limit the descriptor is worth more: closed once the CONNACK is with the kernel
    if (refusal.code === 'ELIMIT_FILES' && transport.bufferedAmount === 0) transport.destroy()
    else setTimeout(() => transport.destroy(), 1000).unref()
  }
  const sink: TransportSink = {
    onData(chunk) {
      if (done) return
      got = Buffer.concat([got, chunk])
      const level = connectProtocolLevel(got)
      if (level === -1) { finish(null); return }
      if (level === null) {
        if (got.length > 1024) finish(null) // not an MQTT CONNECT
        return
      }
      if (level === 5) finish(Buffer.from([0x20, 0x03, 0x00, refusal.code === 'ELIMIT_CONNECT_RATE' ? 0x9f : 0x97, 0x00]))
      else finish(Buffer.from([0x20, 0x02, 0x00, 0x03]))
    },
    onDrain() {},
    onClose() {
      finish(null)
      onClosed()
    },
  }
  transport.attach(sink)
  return () => finish(null)
}

/** The protocol level of a CONNECT at the start of `buf` (3, 4 or 5), -1 if it is not a CONNECT, null if more bytes are needed. */
function connectProtocolLevel(buf: Buffer): number | null {
  if (buf.length < 1) return null
  if (buf[0] !== 0x10) return -1
  let o = 1
  while (o < buf.length && o < 5 && ((buf[o] as number) & 0x80) !== 0) o++
  o++
  if (o + 2 > buf.length) return null
  const nameLen = buf.readUInt16BE(o)
  const at = o + 2 + nameLen
  return at < buf.length ? (buf[at] as number) : null
}
