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
}

/**
 * The stream handed to `aedes.handle()`. It is not a socket: we push into it only the packets
 * that aedes must see, and everything aedes writes lands in the connection's batched queue.
 *
 * Writes bypass Writable's buffer: each chunk goes to the connection at once, and write() answers
 * false while the client's queue is over its soft bound; 'drain' follows when it is below again.
 * So aedes waits for 'drain' (its waitForDrain, whose drainTimeout disconnects a client that
 * stays frozen), and the bytes it wrote anyway are counted in the connection's queue, under its
 * hard bound. Issue 15: with writes corked (mqtt-packet corks every packet) and callbacks held,
 * a frozen QoS 1 subscriber left ~100,000 chunks in Writable's buffer, and destroying the stream
 * made one ERR_STREAM_DESTROYED error (with its stack) per chunk: the event loop stopped ~0.7-2 s.
 */
export class AedesLink extends Duplex {
  readonly owner: LinkOwner
  /** write() answered false since the last 'drain'. */
  #needDrain = false

  constructor(owner: LinkOwner) {
    super({ allowHalfOpen: false })
    this.owner = owner
    // mqtt-packet corks a stream that can be corked around each packet it writes, and uncorks it
    // on the next tick: nothing is buffered here to batch, so this stream cannot (a tick per packet saved)
    Object.defineProperty(this, 'cork', { value: undefined })
  }

  override write(chunk: unknown, encoding?: BufferEncoding | WriteCallback, cb?: WriteCallback): boolean {
    if (typeof encoding === 'function') cb = encoding
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8') : chunk as Buffer
    const ok = this.destroyed || this.owner.writeFromAedes(bytes)
    if (cb !== undefined) process.nextTick(cb)
    if (!ok) this.#needDrain = true
    return ok
  }

  override _read(): void {
    this.owner.resumeReading()
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: WriteCallback): void {
    this.write(chunk)
    cb()
  }

  /** The client's queue drained below its soft bound: let aedes write again. */
  release(): void {
    if (!this.#needDrain) return
    this.#needDrain = false
    this.emit('drain')
  }

  /**
   * The connection is gone: aedes' writes that wait for 'drain' are let go as done (their bytes
   * went with the connection) instead of failed at its close, where each failure is an 'error' on
   * aedes' client: for a slow consumer's ~16,000 queued deliveries, ~50 ms of the event loop.
   */
  letGo(): void {
    this.#needDrain = false
    this.emit('drain')
  }

  override _final(cb: WriteCallback): void {
    this.owner.closeFromAedes()
    cb()
  }

  override _destroy(err: Error | null, cb: WriteCallback): void {
    this.owner.closeFromAedes()
    cb(err)
  }
}
