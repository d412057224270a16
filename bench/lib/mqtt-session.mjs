// Persistent MQTT sessions for the benchmark, over a raw socket (MQTT 3.1.1, no client library):
//
//   await createOfflineSession({ port, clientId: 'bench-offline', filter: 'bench/#', qos: 1 })
//
// connects with clean session 0, subscribes, waits for the SUBACK and disconnects cleanly, so
// the broker keeps the session and queues every matching QoS 1 message for it from then on.
// drainSession() reconnects such a session and counts what the broker had queued (used to check
// what a broker kept, not during measurements).
import net from 'node:net';

export function utf8(s) {
  const b = Buffer.from(s, 'utf8');
  const out = Buffer.alloc(2 + b.length);
  out.writeUInt16BE(b.length, 0);
  b.copy(out, 2);
  return out;
}

export function varint(n) {
  const out = [];
  do {
    let d = n & 0x7f;
    n >>>= 7;
    if (n) d |= 0x80;
    out.push(d);
  } while (n);
  return Buffer.from(out);
}

export function packet(typeFlags, body) {
  return Buffer.concat([Buffer.from([typeFlags]), varint(body.length), body]);
}

function connectPacket(clientId, { clean, keepalive = 60 }) {
  const body = Buffer.concat([
    utf8('MQTT'),
    Buffer.from([4, clean ? 0x02 : 0x00, keepalive >> 8, keepalive & 0xff]),
    utf8(clientId),
  ]);
  return packet(0x10, body);
}

/**
 * A tiny packet reader on a socket: calls onPacket(type, flags, body) for every complete packet.
 */
function readPackets(sock, onPacket) {
  let buf = Buffer.alloc(0);
  sock.on('data', (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    let off = 0;
    for (;;) {
      if (buf.length - off < 2) break;
      let len = 0;
      let mul = 1;
      let i = off + 1;
      let complete = false;
      while (i < buf.length && i <= off + 4) {
        const d = buf[i++];
        len += (d & 0x7f) * mul;
        mul *= 128;
        if (!(d & 0x80)) { complete = true; break; }
      }
      if (!complete || buf.length < i + len) break;
      const h = buf[off];
      onPacket(h >> 4, h & 0x0f, buf.subarray(i, i + len));
      off = i + len;
    }
    buf = off ? buf.subarray(off) : buf;
  });
}

function connectSocket(host, port, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const t = setTimeout(() => { sock.destroy(); reject(new Error(`${what}: connect timed out`)); }, timeoutMs);
    sock.once('connect', () => { clearTimeout(t); sock.setNoDelay(true); resolve(sock); });
    sock.once('error', (err) => { clearTimeout(t); reject(new Error(`${what}: ${err.message}`)); });
  });
}

/**
 * Create a persistent session subscribed to `filter` and leave it offline.
 * Resolves to { sessionPresent, granted } once the broker has closed the connection after our
 * DISCONNECT (or 1 s after it, whichever comes first).
 */
export async function createOfflineSession({ host = '127.0.0.1', port, clientId = 'bench-offline', filter = 'bench/#', qos = 1, timeoutMs = 5000 }) {
  const what = `offline session ${clientId}`;
  const sock = await connectSocket(host, port, timeoutMs, what);
  return new Promise((resolve, reject) => {
    let sessionPresent = null;
    let granted = null;
    let finished = false;
    const done = (err) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve({ sessionPresent, granted });
    };
    const timer = setTimeout(() => done(new Error(`${what}: no ${granted === null ? 'CONNACK/SUBACK' : 'close'} within ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => done(granted === null ? new Error(`${what}: ${err.message}`) : null));
    sock.on('close', () => done(granted === null ? new Error(`${what}: connection closed before the SUBACK`) : null));
    readPackets(sock, (type, _flags, body) => {
      if (type === 2) { // CONNACK
        if (body.length < 2 || body[1] !== 0) return done(new Error(`${what}: CONNACK refused (code ${body[1]})`));
        sessionPresent = !!(body[0] & 1);
        const sub = Buffer.concat([Buffer.from([0, 1]), utf8(filter), Buffer.from([qos])]);
        sock.write(packet(0x82, sub));
      } else if (type === 9) { // SUBACK
        granted = body[2];
        if (granted === undefined || granted >= 0x80) return done(new Error(`${what}: SUBSCRIBE ${filter} refused`));
        sock.end(Buffer.from([0xe0, 0])); // DISCONNECT: the session stays, no will
        setTimeout(() => done(null), 1000).unref();
      }
    });
    sock.write(connectPacket(clientId, { clean: false }));
  });
}

/**
 * Reconnect a persistent session (clean session 0), acknowledge and count what the broker
 * delivers until nothing arrived for idleMs (or maxMs passed), then disconnect and leave the
 * session as it was. Resolves to { received, sessionPresent, complete } (complete: ended by the
 * idle gap rather than by maxMs).
 */
export async function drainSession({ host = '127.0.0.1', port, clientId = 'bench-offline', idleMs = 1000, maxMs = 60000 }) {
  const what = `draining ${clientId}`;
  const sock = await connectSocket(host, port, 5000, what);
  return new Promise((resolve, reject) => {
    let received = 0;
    let sessionPresent = null;
    let last = Date.now();
    const started = Date.now();
    let finished = false;
    const acks = [];
    const done = (err, complete) => {
      if (finished) return;
      finished = true;
      clearInterval(tick);
      if (err) { sock.destroy(); reject(err); return; }
      sock.end(Buffer.from([0xe0, 0]));
      setTimeout(() => sock.destroy(), 500).unref();
      resolve({ received, sessionPresent, complete });
    };
    const tick = setInterval(() => {
      if (acks.length) sock.write(Buffer.concat(acks.splice(0)));
      const now = Date.now();
      if (sessionPresent !== null && now - last >= idleMs) done(null, true);
      else if (now - started >= maxMs) done(null, false);
    }, 20);
    sock.on('error', (err) => done(new Error(`${what}: ${err.message}`)));
    sock.on('close', () => done(sessionPresent === null ? new Error(`${what}: closed before CONNACK`) : null, false));
    readPackets(sock, (type, flags, body) => {
      if (type === 2) {
        if (body.length < 2 || body[1] !== 0) return done(new Error(`${what}: CONNACK refused (code ${body[1]})`));
        sessionPresent = !!(body[0] & 1);
        last = Date.now();
      } else if (type === 3) {
        received++;
        last = Date.now();
        if (((flags >> 1) & 3) === 1) { // QoS 1: PUBACK (the bench queues QoS 1 only)
          const tl = body.readUInt16BE(0);
          const id = body.subarray(2 + tl, 4 + tl);
          acks.push(Buffer.from([0x40, 2, id[0], id[1]]));
          if (acks.length >= 256) sock.write(Buffer.concat(acks.splice(0)));
        }
      }
    });
    sock.write(connectPacket(clientId, { clean: false }));
  });
}
