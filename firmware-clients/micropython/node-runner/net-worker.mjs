// The network side of the MicroPython socket shim: a worker thread that owns real
// net.Sockets. The VM's thread sends one request at a time over a MessagePort and
// sleeps in Atomics.wait; this thread does the I/O on its own event loop, posts the
// answer and wakes it (see run.mjs). Every request gets exactly one answer.
import net from 'node:net'
import { workerData } from 'node:worker_threads'

const { port, signal } = workerData
const flag = new Int32Array(signal)
const sockets = new Map()
let nextFd = 3

// Linux errno numbers, so Python sees the same OSError as on a device.
const ERRNO = { ECONNREFUSED: 111, ECONNRESET: 104, EPIPE: 32, ETIMEDOUT: 110, EHOSTUNREACH: 113, ENOTFOUND: 2 }
const EAGAIN = 11
const EBADF = 9

function answer(msg) {
  port.postMessage(msg)
  Atomics.store(flag, 0, 1)
  Atomics.notify(flag, 0)
}

const errno = (err) => ERRNO[err.code] ?? 5 /* EIO */

// Hands out buffered bytes, EOF or the socket's error to a waiting recv.
function serveRecv(st) {
  const w = st.waiter
  if (!w) return
  let reply
  if (st.len > 0) {
    const all = Buffer.concat(st.chunks)
    const n = Math.min(w.n, all.length)
    reply = { data: new Uint8Array(all.subarray(0, n)) }
    st.chunks = n < all.length ? [all.subarray(n)] : []
    st.len = all.length - n
  } else if (st.error) reply = { err: errno(st.error) }
  else if (st.ended) reply = { data: new Uint8Array(0) }
  else return
  clearTimeout(w.timer)
  st.waiter = null
  answer(reply)
}

const ops = {
  connect({ host, port: p, timeout }) {
    const s = net.connect({ host, port: p })
    s.setNoDelay(true)
    const st = { s, chunks: [], len: 0, ended: false, error: null, waiter: null }
    let settled = false
    const settle = (reply) => { if (!settled) { settled = true; clearTimeout(timer); answer(reply) } }
    const timer = timeout >= 0 ? setTimeout(() => { s.destroy(); settle({ err: ERRNO.ETIMEDOUT }) }, timeout) : undefined
    s.on('connect', () => { const fd = nextFd++; sockets.set(fd, st); settle({ fd }) })
    s.on('data', (d) => { st.chunks.push(d); st.len += d.length; serveRecv(st) })
    s.on('end', () => { st.ended = true; serveRecv(st) })
    s.on('close', () => { st.ended = true; serveRecv(st) })
    s.on('error', (e) => { st.error = e; settle({ err: errno(e) }); serveRecv(st) })
  },
  send({ fd, hex }) {
    const st = sockets.get(fd)
    if (!st) return answer({ err: EBADF })
    if (st.error || st.ended || st.s.destroyed) return answer({ err: st.error ? errno(st.error) : ERRNO.EPIPE })
    const buf = Buffer.from(hex, 'hex')
    st.s.write(buf)
    answer({ n: buf.length })
  },
  recv({ fd, n, timeout }) {
    const st = sockets.get(fd)
    if (!st) return answer({ err: EBADF })
    st.waiter = { n, timer: undefined }
    serveRecv(st)
    if (!st.waiter) return
    if (timeout === 0) { st.waiter = null; return answer({ err: EAGAIN }) }
    if (timeout > 0) st.waiter.timer = setTimeout(() => { st.waiter = null; answer({ err: ERRNO.ETIMEDOUT }) }, timeout)
  },
  close({ fd }) {
    const st = sockets.get(fd)
    if (st) { st.s.destroy(); sockets.delete(fd) }
    answer({ ok: true })
  },
}

port.on('message', (m) => ops[m.op](m))
