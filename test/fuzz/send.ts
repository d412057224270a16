import net from 'node:net'
import { sleep } from '../support/mqtt.ts'
import type { Rng } from './harness.ts'
import { writesOf, type Burst } from './mutate.ts'

/** A connection that is not closed this long after our FIN is counted as stuck (the server stopped reading). */
export const CLOSE_WAIT_MS = 3000

/** Sends one burst of MQTT bytes over TCP; resolves with a note on how the connection ended. */
export function sendBurst(port: number, rng: Rng, burst: Burst): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
    let received = 0
    let closed = false
    let timer: NodeJS.Timeout | null = null
    socket.on('data', (d: Buffer) => { received += d.length })
    socket.on('error', () => {}) // EPIPE/ECONNRESET: the server closed first, as it may
    socket.once('close', () => {
      closed = true
      if (timer) clearTimeout(timer)
      resolve(`received ${received} bytes`)
    })
    socket.once('connect', async () => {
      const writes = writesOf(rng, burst)
      const cut = burst.close === 'destroy-early' ? rng.int(writes.length) : writes.length
      for (let i = 0; i < cut && !closed; i++) {
        socket.write(writes[i] as Buffer)
        // separate pieces reach the server as separate reads
        if (burst.writes === 'pieces') await new Promise((r) => setImmediate(r))
      }
      if (closed) return
      if (burst.close === 'destroy' || burst.close === 'destroy-early') { socket.destroy(); return }
      if (burst.close === 'linger') await sleep(rng.range(10, 150))
      if (closed) return
      socket.end()
      timer = setTimeout(() => {
        socket.destroy()
        resolve(`STUCK: open ${CLOSE_WAIT_MS} ms after FIN, received ${received} bytes`)
      }, CLOSE_WAIT_MS)
    })
  })
}
