import { ByteReader, DecodeError, readValue, writeValue, type ByteSink } from './codec.ts'
import { FRAME_HEADER_BYTES, sealFrame, type FrameFormat } from '../storage/frame.ts'

/** The state log's file header and frames (storage/frame.ts; FORMAT.md). */
export const STATE_FILE_HEADER = Buffer.from('edgebus-mqtt-v1\n', 'latin1')
/** No record is larger (a retained message or queued packet is bounded by the packet size limit). */
export const STATE_FRAMES: FrameFormat = { magic0: 0xeb, magic1: 0x51, maxBody: 512 * 1024 * 1024 }

/** Reserves a frame header in the sink; returns where the frame starts. */
export function beginFrame(s: ByteSink): number {
  s.ensure(FRAME_HEADER_BYTES)
  const at = s.pos
  s.pos += FRAME_HEADER_BYTES
  return at
}

/** Fills in the header of the frame begun at `at` (its body ends at s.pos); returns the frame's size. */
export function endFrame(s: ByteSink, at: number): number {
  return sealFrame(s.buf, at, s.pos, STATE_FRAMES)
}

/**
 * The records of the MQTT state log (FORMAT.md, "Records"). Every change of the state is one
 * record; replaying them in order on an empty state rebuilds it. A record is its type byte and
 * its fields as values (codec.ts), one after the other.
 *
 * Append only: a type's number and its fields are part of the file format.
 */
export const RecordType = {
  /** packet: a retained message (stored or replaced). */
  RETAIN_PUT: 1,
  /** topic: the retained message of a topic is cleared. */
  RETAIN_DEL: 2,
  /** clientId, subscription: a persistent session subscribes (or changes a subscription). */
  SUB_PUT: 3,
  /** clientId, filter: a persistent session unsubscribes. */
  SUB_DEL: 4,
  /** clientId: the session is discarded — subscriptions, queue, incoming QoS 2 state, expiry. */
  CLEAN: 5,
  /** firstSeq, clientIds, packet, messageId: a message queued for clients (sequences firstSeq, firstSeq+1, ...). */
  OUT_ENQ: 6,
  /** clientId, seq, messageId: a queued message got its packet identifier (it is being sent). */
  OUT_MID: 7,
  /** clientId, seq, packet: a queued message is replaced (by its PUBREL, after PUBREC). */
  OUT_SET: 8,
  /** clientId, seq: a queued message is done (acknowledged, expired or dropped). */
  OUT_DEL: 9,
  /** clientId, packet: an incoming QoS 2 PUBLISH waits for its PUBREL. */
  IN_PUT: 10,
  /** clientId, messageId: its PUBREL came. */
  IN_DEL: 11,
  /** clientId, packet: a client's will. */
  WILL_PUT: 12,
  /** clientId: the will is gone (published or replaced). */
  WILL_DEL: 13,
  /** clientId, expiryMs (-1 = never), disconnectedAt (ms since the epoch; 0 = connected): a persistent session's expiry. */
  SESSION: 14,
} as const

/** A packet as the state keeps it: aedes' packet fields, plus whatever else the caller gave. */
export interface StoredPacket {
  cmd?: string
  topic?: string
  payload?: unknown
  qos?: number
  messageId?: number
  brokerId?: string
  brokerCounter?: number
  retain?: boolean
  [key: string]: unknown
}

/** A subscription as aedes hands it over (the SUBSCRIBE packet's entries). */
export interface StoredSubscription {
  topic: string
  qos: number
  rh?: number
  rap?: boolean
  nl?: boolean
  subscriptionIdentifier?: number
  [key: string]: unknown
}

type T = typeof RecordType

export type StateRecord =
  | { t: T['RETAIN_PUT']; packet: StoredPacket }
  | { t: T['RETAIN_DEL']; topic: string }
  | { t: T['SUB_PUT']; clientId: string; sub: StoredSubscription }
  | { t: T['SUB_DEL']; clientId: string; topic: string }
  | { t: T['CLEAN']; clientId: string }
  | { t: T['OUT_ENQ']; seq: number; clientIds: string[]; packet: StoredPacket; messageId: number | undefined }
  | { t: T['OUT_MID']; clientId: string; seq: number; messageId: number | undefined }
  | { t: T['OUT_SET']; clientId: string; seq: number; packet: StoredPacket }
  | { t: T['OUT_DEL']; clientId: string; seq: number }
  | { t: T['IN_PUT']; clientId: string; packet: StoredPacket }
  | { t: T['IN_DEL']; clientId: string; messageId: number }
  | { t: T['WILL_PUT']; clientId: string; packet: StoredPacket }
  | { t: T['WILL_DEL']; clientId: string }
  | { t: T['SESSION']; clientId: string; expiryMs: number; down: number }

/** Writes a record's body (type byte and fields) into the sink. */
export function writeRecord(s: ByteSink, rec: StateRecord): void {
  s.u8(rec.t)
  switch (rec.t) {
    case RecordType.RETAIN_PUT: writeValue(s, rec.packet); break
    case RecordType.RETAIN_DEL: writeValue(s, rec.topic); break
    case RecordType.SUB_PUT: writeValue(s, rec.clientId); writeValue(s, rec.sub); break
    case RecordType.SUB_DEL: writeValue(s, rec.clientId); writeValue(s, rec.topic); break
    case RecordType.CLEAN: writeValue(s, rec.clientId); break
    case RecordType.OUT_ENQ: writeValue(s, rec.seq); writeValue(s, rec.clientIds); writeValue(s, rec.packet); writeValue(s, rec.messageId); break
    case RecordType.OUT_MID: writeValue(s, rec.clientId); writeValue(s, rec.seq); writeValue(s, rec.messageId); break
    case RecordType.OUT_SET: writeValue(s, rec.clientId); writeValue(s, rec.seq); writeValue(s, rec.packet); break
    case RecordType.OUT_DEL: writeValue(s, rec.clientId); writeValue(s, rec.seq); break
    case RecordType.IN_PUT: writeValue(s, rec.clientId); writeValue(s, rec.packet); break
    case RecordType.IN_DEL: writeValue(s, rec.clientId); writeValue(s, rec.messageId); break
    case RecordType.WILL_PUT: writeValue(s, rec.clientId); writeValue(s, rec.packet); break
    case RecordType.WILL_DEL: writeValue(s, rec.clientId); break
    case RecordType.SESSION: writeValue(s, rec.clientId); writeValue(s, rec.expiryMs); writeValue(s, rec.down); break
  }
}

/** Decodes one record body; DecodeError when its bytes (though their checksum held) make no record. */
export function readRecord(buf: Buffer, start: number, end: number): StateRecord {
  const r = new ByteReader(buf, start, end)
  const t = r.u8()
  let rec: StateRecord
  switch (t) {
    case RecordType.RETAIN_PUT: rec = { t, packet: packetOf(readValue(r)) }; break
    case RecordType.RETAIN_DEL: rec = { t, topic: str(readValue(r)) }; break
    case RecordType.SUB_PUT: rec = { t, clientId: str(readValue(r)), sub: subOf(readValue(r)) }; break
    case RecordType.SUB_DEL: rec = { t, clientId: str(readValue(r)), topic: str(readValue(r)) }; break
    case RecordType.CLEAN: rec = { t, clientId: str(readValue(r)) }; break
    case RecordType.OUT_ENQ: {
      const seq = int(readValue(r))
      const ids = readValue(r)
      if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) throw new DecodeError('bad client list')
      rec = { t, seq, clientIds: ids as string[], packet: packetOf(readValue(r)), messageId: optInt(readValue(r)) }
      break
    }
    case RecordType.OUT_MID: rec = { t, clientId: str(readValue(r)), seq: int(readValue(r)), messageId: optInt(readValue(r)) }; break
    case RecordType.OUT_SET: rec = { t, clientId: str(readValue(r)), seq: int(readValue(r)), packet: packetOf(readValue(r)) }; break
    case RecordType.OUT_DEL: rec = { t, clientId: str(readValue(r)), seq: int(readValue(r)) }; break
    case RecordType.IN_PUT: rec = { t, clientId: str(readValue(r)), packet: packetOf(readValue(r)) }; break
    case RecordType.IN_DEL: rec = { t, clientId: str(readValue(r)), messageId: int(readValue(r)) }; break
    case RecordType.WILL_PUT: rec = { t, clientId: str(readValue(r)), packet: packetOf(readValue(r)) }; break
    case RecordType.WILL_DEL: rec = { t, clientId: str(readValue(r)) }; break
    case RecordType.SESSION: {
      const clientId = str(readValue(r))
      const expiryMs = readValue(r)
      const down = int(readValue(r))
      if (typeof expiryMs !== 'number' || !(expiryMs === -1 || (Number.isSafeInteger(expiryMs) && expiryMs >= 0))) throw new DecodeError('bad expiry')
      rec = { t, clientId, expiryMs, down }
      break
    }
    default:
      throw new DecodeError(`unknown record type ${t}`)
  }
  if (!r.atEnd()) throw new DecodeError('bytes after the record')
  return rec
}

function str(v: unknown): string {
  if (typeof v !== 'string') throw new DecodeError('expected a string')
  return v
}

function int(v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new DecodeError('expected a whole number')
  return v
}

function optInt(v: unknown): number | undefined {
  return v === undefined ? undefined : int(v)
}

function packetOf(v: unknown): StoredPacket {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw new DecodeError('expected a packet')
  return v as StoredPacket
}

function subOf(v: unknown): StoredSubscription {
  const o = packetOf(v)
  if (typeof o.topic !== 'string' || typeof o.qos !== 'number') throw new DecodeError('expected a subscription')
  return o as StoredSubscription
}
