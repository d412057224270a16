import { Duplex } from 'node:stream'

type WriteCallback = (err?: Error | null) => void

/** The side of a ClientConnection that aedes sees. */
export interface LinkOwner {
  /** aedes wrote bytes for the client; returns false when the client's queue is over its soft bound. */
  writeFromAedes(chunk: Buffer): boolean
  /** aedes wants more input. */
  resumeReading(): void
  /** aedes ended or destroyed the stream: flush and close the transport. */
  closeFromAedes(): void
  /** Bytes aedes wrote that wait in this stream's own buffer (while we hold its callbacks). */
  checkBacklog(linkBytes: number): void
}

/**
 * The stream handed to `aedes.handle()`. It is not a socket: we push into it only the packets
 * that aedes must see, and everything aedes writes lands in the connection's batched queue.
 * When the client's queue is over its soft bound we hold aedes' write callback, so aedes' own
 * drainTimeout disconnects a client that stays frozen.
 */
export class AedesLink extends Duplex {
  readonly owner: LinkOwner
  #held: Array<() => void> = []

  constructor(owner: LinkOwner) {
    super({ allowHalfOpen: false, decodeStrings: true })
    this.owner = owner
  }

  // aedes keeps writing while we hold its callbacks; those bytes wait in Writable's buffer, so the
  // hard bound must see them too
  override write(chunk: unknown, encoding?: BufferEncoding | WriteCallback, cb?: WriteCallback): boolean {
    const ok = super.write(chunk, encoding as BufferEncoding, cb)
    if (!ok) this.owner.checkBacklog(this.writableLength)
    return ok
  }

  override _read(): void {
    this.owner.resumeReading()
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.owner.writeFromAedes(chunk)) cb()
    else this.#held.push(cb)
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    let ok = true
    for (let i = 0; i < chunks.length; i++) ok = this.owner.writeFromAedes((chunks[i] as { chunk: Buffer }).chunk)
    if (ok) cb()
    else this.#held.push(cb)
  }

  /** The client's queue drained below its soft bound: let aedes write again. */
  release(): void {
    const held = this.#held
    if (held.length === 0) return
    this.#held = []
    for (const cb of held) cb()
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.owner.closeFromAedes()
    cb()
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const held = this.#held
    this.#held = []
    for (const h of held) h()
    this.owner.closeFromAedes()
    cb(err)
  }
}
