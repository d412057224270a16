import net from 'node:net'
import { sleep } from '../support/mqtt.ts'
import type { StartedEdgebus } from '../support/edgebus.ts'
import { alive, deriveSeed, Rng, type Budget, type Recorder } from './harness.ts'
import { mqttBurst, writesOf, type Burst } from './mutate.ts'

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

/**
 * `parallel` workers send MQTT bursts (mutate.ts) through `send` until the budget is spent or the
 * server is gone; every burst is recorded. Returns how many connections and how many were stuck.
 */
export async function runMqttBursts(
  srv: StartedEdgebus, seed: number, budget: Budget, rec: Recorder, parallel: number, label: string,
  send: (rng: Rng, burst: Burst) => Promise<string>,
): Promise<{ connections: number; stuck: number }> {
  let next = 0
  let stuck = 0
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (!budget.done() && alive(srv)) {
      const i = next++
      const rng = new Rng(deriveSeed(seed, i))
      const burst = mqttBurst(rng, 24)
      budget.inputs += burst.inputs.length
      const entry = rec.start(i, `${label}${burst.label}`, burst.inputs)
      entry.note = await send(rng, burst)
      if (entry.note.startsWith('STUCK')) stuck++
      entry.done = true
    }
  }))
  return { connections: next, stuck }
}
