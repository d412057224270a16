import { createServer } from 'node:net'

/**
 * A free loopback TCP port, bound and released at once: for peers that cannot listen on port 0
 * and report it (mosquitto, nats-server routes). Another process may take it meanwhile, so a
 * starter that can retry on another port should (see onFreshPorts in remotes.ts).
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}
