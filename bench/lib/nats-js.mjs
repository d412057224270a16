// A minimal NATS client-protocol requester for the benchmark: enough to call the JetStream
// API ($JS.API.*) of the nats-server under test over plain TCP, without a client library.
//
//   await jsRequest(port, '$JS.API.STREAM.CREATE.bench', { name: 'bench', subjects: ['bench.>'], storage: 'file' })
//
// Protocol (docs.nats.io, "Client Protocol"): the server greets with INFO; we send CONNECT,
// SUB to a private inbox, PUB <subject> <reply inbox> <bytes>, and read the reply as
// MSG <subject> <sid> [reply] <bytes>\r\n<payload>\r\n. HMSG (headers) is handled too, PING is
// answered with PONG, -ERR fails the request.
import net from 'node:net';
import { SplitReads } from './split-reads.mjs';

/**
 * One request/reply over a fresh connection. Resolves to the parsed JSON reply; rejects on a
 * connection error, a -ERR from the server, a timeout, or a JetStream API error in the reply
 * ({"error": {"code", "err_code", "description"}}).
 */
export function jsRequest(port, subject, body, { host = '127.0.0.1', timeoutMs = 5000 } = {}) {
  const inbox = `_INBOX.edgebus_bench_${process.pid}_${Date.now().toString(36)}`;
  const payload = Buffer.from(body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    let buf = Buffer.alloc(0);
    let sent = false;
    let done = false;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new Error(`no reply to ${subject} within ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => finish(new Error(`nats ${host}:${port}: ${err.message}`)));
    sock.on('close', () => finish(new Error(`nats ${host}:${port} closed the connection before replying to ${subject}`)));
    sock.on('data', (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        const eol = buf.indexOf('\r\n');
        if (eol < 0) return;
        const line = buf.subarray(0, eol).toString('latin1');
        const [op, ...args] = line.split(' ');
        const verb = op.toUpperCase();
        if (verb === 'MSG' || verb === 'HMSG') {
          // MSG subject sid [reply] size   /   HMSG subject sid [reply] hdrsize totalsize
          const total = Number(args[args.length - 1]);
          const hdr = verb === 'HMSG' ? Number(args[args.length - 2]) : 0;
          if (buf.length < eol + 2 + total + 2) return; // wait for the whole payload
          const head = buf.subarray(eol + 2, eol + 2 + hdr).toString('latin1');
          const data = buf.subarray(eol + 2 + hdr, eol + 2 + total).toString('utf8');
          buf = buf.subarray(eol + 2 + total + 2);
          if (/^NATS\/1\.0 503/.test(head)) {
            finish(new Error(`${subject}: no responders (is JetStream enabled?)`));
            return;
          }
          let reply;
          try {
            reply = JSON.parse(data);
          } catch {
            finish(new Error(`reply to ${subject} is not JSON: ${data.slice(0, 200)}`));
            return;
          }
          if (reply && reply.error) {
            const e = reply.error;
            finish(new Error(`${subject}: ${e.description || JSON.stringify(e)} (code ${e.code}${e.err_code ? `, err_code ${e.err_code}` : ''})`));
          } else finish(null, reply);
          return;
        }
        buf = buf.subarray(eol + 2);
        if (verb === 'INFO' && !sent) {
          sent = true;
          sock.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"name":"edgebus-bench"}\r\n` +
            `SUB ${inbox} 1\r\nPUB ${subject} ${inbox} ${payload.length}\r\n`);
          sock.write(payload);
          sock.write('\r\n');
        } else if (verb === 'PING') {
          sock.write('PONG\r\n');
        } else if (verb === '-ERR') {
          finish(new Error(`nats: ${line}`));
          return;
        }
        // +OK, PONG, INFO updates: nothing to do
      }
    });
  });
}

/** Create (or, if it exists with the same config, confirm) a JetStream stream. Resolves to the stream info. */
export function createStream(port, config, opts) {
  return jsRequest(port, `$JS.API.STREAM.CREATE.${config.name}`, config, opts);
}

/** Stream info ({config, state: {messages, bytes, first_seq, last_seq, ...}}). */
export function streamInfo(port, name, opts) {
  return jsRequest(port, `$JS.API.STREAM.INFO.${name}`, '', opts);
}

/**
 * Read a whole JetStream stream back through the NATS client protocol and time it: the
 * comparison for edgebus' replay rows (issue 4). One raw TCP connection: CONNECT, SUB to a
 * private deliver subject (sid 1) and an inbox (sid 2), PING; on the PONG the clock starts and
 * `$JS.API.CONSUMER.CREATE.<stream>` asks for an ephemeral push consumer (deliver_policy all,
 * replay_policy instant) delivering to that subject. It stops when `expect` messages arrived.
 *
 *   ack 'none'      nothing is acknowledged (the QoS 0 equivalent)
 *   ack 'explicit'  each message is acked by publishing an empty message to its reply subject,
 *                   all acks for one chunk in one write, at most maxAckPending unacked (the QoS 1
 *                   equivalent: 256 = edgebus' window per MQTT subscription)
 *
 * Like the MQTT reader it must outrun the server: it reads each MSG/HMSG control line only for
 * its sid, reply and sizes (byte scans, no strings), skips the payload (a payload continuing in
 * the next chunk becomes "bytes still to skip") and never copies it. Status messages (an HMSG
 * whose header line is `NATS/1.0 100 ...`: idle heartbeat, flow control request) are not
 * counted; a flow control request is answered. payload_bytes excludes the NATS headers (every
 * message nats' MQTT listener stored carries `Nmqtt-Pub:1`, 25 header bytes); they are in wire_bytes.
 */
export function readStreamPush(port, { stream = 'bench', ack = 'none', maxAckPending = 256, expect, host = '127.0.0.1', timeoutMs = 60000, onStart, flowControl = false } = {}) {
  const tag = `${process.pid}_${Date.now().toString(36)}`;
  const deliver = `_bench.replay.${tag}`; // unique: a push consumer keeps delivering to its subject for a while after we leave
  const inbox = `_INBOX.edgebus_bench_${tag}`;
  const config = { deliver_subject: deliver, ack_policy: ack, deliver_policy: 'all', replay_policy: 'instant' };
  if (ack === 'explicit') config.max_ack_pending = maxAckPending;
  if (flowControl) Object.assign(config, { flow_control: true, idle_heartbeat: 1e9 });
  const body = Buffer.from(JSON.stringify({ stream_name: stream, config }));
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    sock.setNoDelay(true); // ack batches must not wait for Nagle
    let received = 0;
    let payloadBytes = 0;
    let wireBytes = 0;
    let chunks = 0;
    let ackWrites = 0;
    let statusMsgs = 0;
    let fcReplies = 0;
    let t0 = 0n;
    let tFirst = 0n;
    let state = 'info'; // info -> pong -> created
    let consumer = null;
    const reads = new SplitReads();
    let done = false;
    const acks = []; // [buf, start, end] of reply subjects to ack in this chunk

    const finish = (error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const t1 = process.hrtime.bigint();
      sock.destroy(); // the ephemeral consumer goes away with its interest (inactive_threshold)
      resolve({
        ok: !error,
        ...(error ? { error } : {}),
        transport: 'nats',
        ack,
        ...(ack === 'explicit' ? { max_ack_pending: maxAckPending } : {}),
        flow_control: flowControl,
        expected: expect,
        received,
        payload_bytes: payloadBytes,
        wire_bytes: wireBytes,
        seconds: t0 ? Number(t1 - t0) / 1e9 : 0,
        first_msg_ms: tFirst ? Number(tFirst - t0) / 1e6 : null,
        chunks,
        ack_writes: ackWrites,
        status_msgs: statusMsgs,
        fc_replies: fcReplies,
        consumer,
      });
    };
    const timer = setTimeout(() => finish(`${received} of ${expect} messages within ${timeoutMs} ms`), timeoutMs);
    sock.on('error', (err) => finish(`nats ${host}:${port}: ${err.message}`));
    sock.on('close', () => finish(`nats closed the connection after ${received} of ${expect} messages`));

    // decimal number in buf[s, e)
    const int = (buf, s, e) => {
      let n = 0;
      for (let k = s; k < e; k++) n = n * 10 + (buf[k] - 48);
      return n;
    };

    sock.on('data', (chunk) => {
      if (done) return;
      wireBytes += chunk.length;
      chunks++;
      const from = reads.next(chunk);
      if (from === null) return;
      const buf = from.buf;
      let off = from.off;
      const len = buf.length;
      const sp = [0, 0, 0, 0, 0, 0];
      while (off < len) {
        const nl = buf.indexOf(10, off);
        if (nl < 0) {
          if (len - off > 4096) { finish('control line over 4 KB'); return; }
          reads.tail = buf.subarray(off);
          break;
        }
        const eol = nl - 1; // the \r
        const c0 = buf[off];
        if (c0 === 77 || c0 === 72) { // M(SG) / H(MSG)
          // MSG <subject> <sid> [reply] <size>   HMSG <subject> <sid> [reply] <hdr size> <total size>
          let n = 0;
          for (let p = buf.indexOf(32, off); p >= 0 && p < eol && n < 6; p = buf.indexOf(32, p + 1)) sp[n++] = p;
          const hmsg = c0 === 72;
          const total = int(buf, sp[n - 1] + 1, eol);
          const hdr = hmsg ? int(buf, sp[n - 2] + 1, sp[n - 1]) : 0;
          const hasReply = n === (hmsg ? 5 : 4);
          const sid = buf[sp[1] + 1];
          const start = nl + 1;
          const end = start + total + 2;
          if (sid === 49 && sp[2] - sp[1] === 2) { // sid 1: a delivery
            if (hmsg && len < start + hdr) { reads.tail = buf.subarray(off); break; } // headers are small: want all of them
            if (hmsg && buf[start + 8] === 32) { // "NATS/1.0 100 Idle Heartbeat" / "... FlowControl Request"
              statusMsgs++;
              if (hasReply) { acks.push([buf, sp[2] + 1, sp[3]]); fcReplies++; } // answer a flow control request
            } else {
              if (received === 0) tFirst = process.hrtime.bigint();
              received++;
              payloadBytes += total - hdr;
              if (ack === 'explicit' && hasReply) acks.push([buf, sp[2] + 1, sp[3]]);
            }
            if (end <= len) off = end;
            else { reads.skip = end - len; off = len; }
            continue;
          }
          // sid 2: the API reply, read whole
          if (end > len) { reads.tail = buf.subarray(off); break; }
          let reply;
          try {
            reply = JSON.parse(buf.toString('utf8', start, start + total));
          } catch {
            finish(`consumer create: reply is not JSON: ${buf.toString('utf8', start, Math.min(start + total, start + 200))}`);
            return;
          }
          if (reply.error) {
            finish(`consumer create: ${reply.error.description || JSON.stringify(reply.error)} (code ${reply.error.code})`);
            return;
          }
          consumer = reply.name ?? reply.config?.name ?? null;
          state = 'created';
          off = end;
          continue;
        }
        const line = buf.toString('latin1', off, eol);
        off = nl + 1;
        if (line.startsWith('PING')) sock.write('PONG\r\n');
        else if (line.startsWith('-ERR')) { finish(`nats: ${line}`); return; }
        else if (line.startsWith('INFO') && state === 'info') {
          state = 'pong';
          sock.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"name":"edgebus-bench-replay"}\r\n` +
            `SUB ${deliver} 1\r\nSUB ${inbox} 2\r\nPING\r\n`);
        } else if (line.startsWith('PONG') && state === 'pong') {
          // the SUBs are in place: start the clock with the consumer request
          state = 'creating';
          t0 = process.hrtime.bigint();
          onStart?.();
          sock.write(Buffer.concat([Buffer.from(`PUB $JS.API.CONSUMER.CREATE.${stream} ${inbox} ${body.length}\r\n`), body, Buffer.from('\r\n')]));
        }
        // +OK, INFO updates: nothing to do
      }
      if (acks.length) {
        // PUB <reply> 0\r\n\r\n for each, in one write
        let size = 0;
        for (const [, s, e] of acks) size += e - s + 10;
        const out = Buffer.allocUnsafe(size);
        let o = 0;
        for (const [b, s, e] of acks) {
          o += out.write('PUB ', o, 'latin1');
          o += b.copy(out, o, s, e);
          o += out.write(' 0\r\n\r\n', o, 'latin1');
        }
        acks.length = 0;
        sock.write(out);
        ackWrites++;
      }
      if (received >= expect) finish(null);
    });
  });
}
