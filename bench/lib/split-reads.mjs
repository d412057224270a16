// Frames that straddle socket reads, for the counting readers (mqtt-replay-reader, nats-js): a
// frame whose body goes on in the next read is remembered as bytes still to skip (never copied);
// a frame whose head is cut is kept and glued in front of the next read.
export class SplitReads {
  /** Bytes of an already counted frame still to come. */
  skip = 0;
  /** The start of a frame whose head did not fit in the last read. */
  tail = null;

  /** Where parsing of this read starts: { buf, off }, or null when the whole read was skipped. */
  next(chunk) {
    let buf = chunk;
    let off = 0;
    if (this.skip) {
      const n = Math.min(this.skip, buf.length);
      this.skip -= n;
      off = n;
      if (off === buf.length) return null;
    }
    if (this.tail) {
      buf = Buffer.concat([this.tail, off ? buf.subarray(off) : buf]);
      off = 0;
      this.tail = null;
    }
    return { buf, off };
  }
}
