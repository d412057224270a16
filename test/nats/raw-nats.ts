import { connect as tcpConnect, type Socket } from 'node:net'
import { expect, vi } from 'vitest'

export interface RawNats {
  readonly socket: Socket
  /** Everything received so far (latin1). */
  readonly text: string
  readonly closed: boolean
  send(data: string | Buffer): void
  /** Waits until the received text matches. */
  until(re: RegExp, timeout?: number): Promise<void>
}

/** A plain TCP client of the NATS port that records what it gets; resolves once INFO arrived. */
export async function rawNats(port: number, opened: Socket[] = []): Promise<RawNats> {
  const socket = tcpConnect(port, '127.0.0.1')
  opened.push(socket)
  let text = ''
  let closed = false
  socket.on('data', (d: Buffer) => { text += d.toString('latin1') })
  socket.on('close', () => { closed = true })
  socket.on('error', () => {})
  await vi.waitFor(() => expect(text).toMatch(/^INFO \{.*\}\r\n/))
  return {
    socket,
    get text() { return text },
    get closed() { return closed },
    send: (data) => { socket.write(data) },
    until: (re, timeout = 5000) => vi.waitFor(() => expect(text).toMatch(re), { timeout }),
  }
}
