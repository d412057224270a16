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
