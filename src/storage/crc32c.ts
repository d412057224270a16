/**
 * CRC-32C (Castagnoli), the checksum of every journal record: reflected polynomial 0x82F63B78,
 * initial value and final XOR 0xFFFFFFFF (RFC 3720 B.4, the iSCSI/ext4/SCTP checksum; check value
 * of "123456789" is 0xE3069283). Node ships no CRC-32C, so this is a table-driven one using
 * slicing-by-8: eight 256-entry tables, eight input bytes per step.
 */
const POLY = 0x82f63b78

/** TABLES[k * 256 + b]: the CRC of byte b followed by k zero bytes. */
const TABLES = buildTables()

function buildTables(): Uint32Array {
  const t = new Uint32Array(8 * 256)
  for (let b = 0; b < 256; b++) {
    let c = b
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1
    t[b] = c >>> 0
  }
  for (let b = 0; b < 256; b++) {
    let c = t[b] as number
    for (let k = 1; k < 8; k++) {
      c = (t[c & 0xff] as number) ^ (c >>> 8)
      t[k * 256 + b] = c >>> 0
    }
  }
  return t
}

/**
 * The CRC-32C of `buf[start, end)`. Pass the result of a previous call as `prev` to continue a
 * checksum over several ranges (crc32c(b, 0, 10) then crc32c(b, 10, 20, that) equals crc32c(b, 0, 20)).
 */
export function crc32c(buf: Uint8Array, start = 0, end = buf.length, prev = 0): number {
  const t = TABLES
  let c = ~prev
  let i = start
  const end8 = end - 8
  while (i <= end8) {
    c ^= (buf[i] as number) | ((buf[i + 1] as number) << 8) | ((buf[i + 2] as number) << 16) | ((buf[i + 3] as number) << 24)
    c = (t[1792 + (c & 0xff)] as number) ^
      (t[1536 + ((c >>> 8) & 0xff)] as number) ^
      (t[1280 + ((c >>> 16) & 0xff)] as number) ^
      (t[1024 + (c >>> 24)] as number) ^
      (t[768 + (buf[i + 4] as number)] as number) ^
      (t[512 + (buf[i + 5] as number)] as number) ^
      (t[256 + (buf[i + 6] as number)] as number) ^
      (t[buf[i + 7] as number] as number)
    i += 8
  }
  while (i < end) {
    c = (t[(c ^ (buf[i] as number)) & 0xff] as number) ^ (c >>> 8)
    i++
  }
  return ~c >>> 0
}
