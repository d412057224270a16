import * as fs from 'node:fs'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import { basename, dirname, join, resolve, sep } from 'node:path'

/**
 * A power-cut model of the file system, for tests (test/powerloss).
 *
 * Recording. `CrashFs.record(root)` wraps the node:fs functions the stores use (the CommonJS `fs`
 * object, then `module.syncBuiltinESMExports()`, so `import * as fs from 'node:fs'` in src sees
 * the wrappers too): every call still goes to the real file system, and each one under `root`
 * that changes a file or a directory is also written to an event log: writes (with their bytes),
 * truncations, creations, renames, unlinks, and fsync/fdatasync (start and end). This is the least
 * invasive way to see every write the journal, the MQTT state log and the consumer state make:
 * only some of their paths take injectable file operations, and index files, journal.meta,
 * renames and directory syncs never go through them. Nothing in src changes for it.
 *
 * Replaying. `CrashModel` applies the events in order and keeps, per file, the bytes made durable
 * by a completed fsync/fdatasync of that file (any descriptor: they sync the inode) and the writes
 * since; per directory, the entries made durable by an fsync of the directory and the changes
 * since. This is the strict POSIX rule: a file created, renamed or unlinked is durable only once
 * its directory is synced, and a file's bytes only once the file is. (ext4 with data=ordered is
 * kinder: it journals metadata in order and writes a renamed-over file's data first; edgebus
 * must not depend on that, SD cards run FAT, f2fs or ext4 with other options.) A sync counts from
 * its end: the writes made before it started are durable once it returned.
 *
 * `image(dir, rng)` builds a directory as a power cut at that point would leave it: the durable
 * bytes and entries, plus what the page cache might have written back by itself — a random choice
 * among: nothing, everything, a prefix of each file's unsynced writes with the last one torn at a
 * random byte, or a random subset of them, each torn or not (pages are written back in any
 * order). Directory changes not yet synced are kept or dropped the same way.
 */

const require = createRequire(import.meta.url)
const cjs = require('node:fs') as typeof fs
type Fn = (...args: any[]) => any

export type FileOp = { t: 'write'; node: number; pos: number; data: Buffer } | { t: 'trunc'; node: number; len: number }
export type DirOp =
  | { t: 'link'; dir: number; name: string; node: number; kind: 'file' | 'dir' }
  | { t: 'unlink'; dir: number; name: string }
  | { t: 'rename'; dir: number; from: string; to: string; node: number }
export type CrashEvent =
  | FileOp
  | DirOp
  | { t: 'syncStart'; node: number; token: number; path: string }
  | { t: 'syncEnd'; token: number }
  /** The kernel's flusher wrote every dirty page and the metadata journal back (the model of time passing). */
  | { t: 'writeback' }

/** What a model is built from: a CrashFs, or one saved to a file (harness: a failure's replay). */
export interface Recording {
  readonly root: string
  readonly initial: ReadonlyArray<{ path: string; node: number; kind: 'file' | 'dir'; data: Buffer | null }>
  readonly events: readonly CrashEvent[]
}

interface LiveNode { id: number; kind: 'file' | 'dir'; path: string | null; entries: Map<string, LiveNode> | null; size: number }
interface OpenFile { node: LiveNode; pos: number; append: boolean }

const PATCHED = [
  'openSync', 'open', 'closeSync', 'close', 'writeSync', 'write', 'writeFileSync', 'ftruncateSync', 'fsyncSync', 'fdatasyncSync',
  'fsync', 'fdatasync', 'renameSync', 'rename', 'rmSync', 'rm', 'unlinkSync', 'unlink', 'mkdirSync',
] as const
const PATCHED_PROMISES = ['open', 'rename', 'rm', 'unlink'] as const

let active: CrashFs | null = null

/** The recording layer: see the file comment. One at a time per process. */
export class CrashFs implements Recording {
  readonly root: string
  readonly events: CrashEvent[] = []
  /** Files and directories that existed under root when recording began (durable by then). */
  readonly initial: Array<{ path: string; node: number; kind: 'file' | 'dir'; data: Buffer | null }> = []
  readonly #real = new Map<string, Fn>()
  readonly #realPromises = new Map<string, Fn>()
  readonly #fds = new Map<number, OpenFile>()
  readonly #rootNode: LiveNode
  #nextId = 1
  #nextToken = 1
  #depth = 0

  private constructor(root: string) {
    this.root = resolve(root)
    this.#rootNode = this.#node('dir', this.root)
    this.#scan(this.#rootNode, this.root)
  }

  /** Starts recording every change under `root` (which must exist). */
  static record(root: string): CrashFs {
    if (active !== null) throw new Error('crash-fs: already recording')
    const c = new CrashFs(root)
    c.#install()
    active = c
    return c
  }

  /**
   * Tests that need a slow disk at one point: called with the path of each asynchronous
   * fsync/fdatasync (callback form) as it starts; returning true holds its end (it covers the
   * writes before it, and returns to its caller) until `finish` is called.
   */
  holdSync: ((path: string, finish: () => void) => boolean) | null = null

  /** The index the next event will get: an acknowledgement seen now is before every cut at or after it. */
  now(): number {
    return this.events.length
  }

  /** Models the kernel writing back all dirty data and metadata (dirty_expire passing). */
  writeback(): void {
    this.events.push({ t: 'writeback' })
  }

  /** Stops recording and puts node:fs back. */
  stop(): void {
    if (active !== this) return
    for (const [k, f] of this.#real) (cjs as unknown as Record<string, Fn>)[k] = f
    for (const [k, f] of this.#realPromises) (cjs.promises as unknown as Record<string, Fn>)[k] = f
    syncBuiltinESMExports()
    active = null
  }

  // --- the namespace as it is now ---------------------------------------------------------

  #node(kind: 'file' | 'dir', path: string | null): LiveNode {
    return { id: this.#nextId++, kind, path, entries: kind === 'dir' ? new Map() : null, size: 0 }
  }

  #scan(dirNode: LiveNode, path: string): void {
    for (const ent of cjs.readdirSync(path, { withFileTypes: true })) {
      const p = join(path, ent.name)
      if (ent.isDirectory()) {
        const n = this.#node('dir', p)
        dirNode.entries!.set(ent.name, n)
        this.initial.push({ path: p, node: n.id, kind: 'dir', data: null })
        this.#scan(n, p)
      } else if (ent.isFile()) {
        const n = this.#node('file', p)
        const data = cjs.readFileSync(p)
        n.size = data.length
        dirNode.entries!.set(ent.name, n)
        this.initial.push({ path: p, node: n.id, kind: 'file', data })
      }
    }
  }

  #under(p: unknown): string | null {
    if (typeof p !== 'string' && !(p instanceof URL) && !Buffer.isBuffer(p)) return null
    const abs = resolve(String(p instanceof URL ? p.pathname : p))
    return abs === this.root || abs.startsWith(this.root + sep) ? abs : null
  }

  #lookup(abs: string): LiveNode | null {
    if (abs === this.root) return this.#rootNode
    let n: LiveNode | undefined = this.#rootNode
    for (const part of abs.slice(this.root.length + 1).split(sep)) {
      n = n?.entries?.get(part)
      if (n === undefined) return null
    }
    return n ?? null
  }

  #parent(abs: string): LiveNode {
    const d = this.#lookup(dirname(abs))
    if (d === null || d.kind !== 'dir') throw new Error(`crash-fs: ${abs} is in a directory not seen created`)
    return d
  }

  #link(abs: string, kind: 'file' | 'dir'): LiveNode {
    const dir = this.#parent(abs)
    const n = this.#node(kind, abs)
    dir.entries!.set(basename(abs), n)
    this.events.push({ t: 'link', dir: dir.id, name: basename(abs), node: n.id, kind })
    return n
  }

  #unlinked(abs: string): void {
    const n = this.#lookup(abs)
    if (n === null || cjs.existsSync(abs)) return
    const dir = this.#parent(abs)
    dir.entries!.delete(basename(abs))
    n.path = null
    this.events.push({ t: 'unlink', dir: dir.id, name: basename(abs) })
  }

  #renamed(fromAbs: string, toAbs: string): void {
    const n = this.#lookup(fromAbs)
    if (n === null) return
    const fromDir = this.#parent(fromAbs)
    const toDir = this.#parent(toAbs)
    const replaced = toDir.entries!.get(basename(toAbs))
    if (replaced !== undefined && replaced !== n) replaced.path = null
    fromDir.entries!.delete(basename(fromAbs))
    toDir.entries!.set(basename(toAbs), n)
    n.path = toAbs
    if (fromDir === toDir) {
      this.events.push({ t: 'rename', dir: toDir.id, from: basename(fromAbs), to: basename(toAbs), node: n.id })
    } else {
      // not atomic across directories (the stores do not do this): the new name, then the old one goes
      this.events.push({ t: 'link', dir: toDir.id, name: basename(toAbs), node: n.id, kind: n.kind })
      this.events.push({ t: 'unlink', dir: fromDir.id, name: basename(fromAbs) })
    }
  }

  #opened(abs: string, flags: unknown, fd: number): void {
    const f = typeof flags === 'number' ? flags : String(flags ?? 'r')
    const creates = typeof f === 'number' ? (f & fs.constants.O_CREAT) !== 0 : /[wa]/.test(f)
    const truncates = typeof f === 'number' ? (f & fs.constants.O_TRUNC) !== 0 : f.startsWith('w')
    const append = typeof f === 'number' ? (f & fs.constants.O_APPEND) !== 0 : f.startsWith('a')
    let n = this.#lookup(abs)
    if (n === null) {
      if (!creates) throw new Error(`crash-fs: ${abs} opened but never seen created`)
      n = this.#link(abs, 'file')
    } else if (truncates && n.kind === 'file' && n.size > 0) {
      n.size = 0
      this.events.push({ t: 'trunc', node: n.id, len: 0 })
    }
    this.#fds.set(fd, { node: n, pos: 0, append })
  }

  #wrote(fd: number | OpenFile, data: Buffer, position: number | null | undefined): void {
    const o = typeof fd === 'number' ? this.#fds.get(fd) : fd
    if (o === undefined || data.length === 0) return
    const pos = o.append ? o.node.size : typeof position === 'number' && position >= 0 ? position : o.pos
    if (!(typeof position === 'number' && position >= 0)) o.pos = pos + data.length
    o.node.size = Math.max(o.node.size, pos + data.length)
    this.events.push({ t: 'write', node: o.node.id, pos, data: Buffer.from(data) })
  }

  #truncated(fd: number, len: number): void {
    const o = this.#fds.get(fd)
    if (o === undefined) return
    o.node.size = len
    this.events.push({ t: 'trunc', node: o.node.id, len })
  }

  #syncStart(fd: number): number {
    const o = this.#fds.get(fd)
    if (o === undefined) return 0
    const token = this.#nextToken++
    this.events.push({ t: 'syncStart', node: o.node.id, token, path: o.node.path ?? '' })
    return token
  }

  #syncEnd(token: number): void {
    if (token !== 0) this.events.push({ t: 'syncEnd', token })
  }

  // --- the wrappers -------------------------------------------------------------------------

  #install(): void {
    const fsObj = cjs as unknown as Record<string, Fn>
    for (const k of PATCHED) this.#real.set(k, fsObj[k] as Fn)
    const promises = cjs.promises as unknown as Record<string, Fn>
    for (const k of PATCHED_PROMISES) this.#realPromises.set(k, promises[k] as Fn)
    const real = (k: string): Fn => this.#real.get(k) as Fn
    // calls Node makes inside a wrapped call (writeFileSync opens, writes, closes) are not recorded twice
    const guarded = (fn: Fn, record: (result: any, args: any[]) => void): Fn => (...args: any[]) => {
      if (this.#depth > 0) return fn(...args)
      this.#depth++
      let result: unknown
      try {
        result = fn(...args)
      } finally {
        this.#depth--
      }
      record(result, args)
      return result
    }
    const cbWrapped = (fn: Fn, record: (args: any[], cbArgs: any[]) => void): Fn => (...args: any[]) => {
      const cb = args[args.length - 1]
      if (typeof cb !== 'function' || this.#depth > 0) return fn(...args)
      args[args.length - 1] = (...cbArgs: any[]) => {
        if (cbArgs[0] == null) record(args, cbArgs)
        cb(...cbArgs)
      }
      return fn(...args)
    }

    fsObj['openSync'] = guarded(real('openSync'), (fd, [p, flags]) => {
      const abs = this.#under(p)
      if (abs !== null) this.#opened(abs, flags, fd)
    })
    fsObj['open'] = cbWrapped(real('open'), ([p, flags], [, fd]) => {
      const abs = this.#under(p)
      if (abs !== null) this.#opened(abs, typeof flags === 'function' ? 'r' : flags, fd)
    })
    fsObj['closeSync'] = guarded(real('closeSync'), (_r, [fd]) => { this.#fds.delete(fd) })
    // forgotten at the call: the number may be reused by an open that runs before the callback
    const close = real('close')
    fsObj['close'] = (fd: number, ...rest: unknown[]) => {
      if (this.#depth === 0) this.#fds.delete(fd)
      return close(fd, ...rest)
    }
    fsObj['writeSync'] = guarded(real('writeSync'), (n, [fd, buf, a, b, c]) => {
      if (!this.#fds.has(fd)) return
      // (fd, string, position?, encoding?) or (fd, buffer, offset?, length?, position?)
      if (typeof buf === 'string') this.#wrote(fd, Buffer.from(buf, typeof b === 'string' ? (b as BufferEncoding) : 'utf8').subarray(0, n), typeof a === 'number' ? a : null)
      else this.#wrote(fd, bytesOf(buf, typeof a === 'number' ? a : 0, n), typeof c === 'number' ? c : null)
    })
    // the file is the one the descriptor names at the call; recorded when the write returned
    const write = real('write')
    fsObj['write'] = (...args: any[]) => {
      const cb = args[args.length - 1]
      const [fd, buf, a, , c] = args
      const file = this.#fds.get(fd)
      if (typeof cb !== 'function' || this.#depth > 0 || file === undefined || typeof buf === 'string') return write(...args)
      args[args.length - 1] = (err: unknown, n: number, b: unknown) => {
        if (err == null) this.#wrote(file, bytesOf(buf, typeof a === 'number' ? a : 0, n), typeof c === 'number' ? c : null)
        cb(err, n, b)
      }
      return write(...args)
    }
    fsObj['writeFileSync'] = guarded(real('writeFileSync'), (_r, [p, data, opts]) => {
      const abs = this.#under(p)
      if (abs === null) return
      const flag = typeof opts === 'object' && opts !== null && typeof opts.flag === 'string' ? opts.flag : 'w'
      const enc = typeof opts === 'string' ? opts : typeof opts === 'object' && opts?.encoding ? opts.encoding : 'utf8'
      const bytes = typeof data === 'string' ? Buffer.from(data, enc) : bytesOf(data, 0, data.byteLength)
      const fake = -1 - this.#nextToken++
      this.#opened(abs, flag, fake)
      this.#wrote(fake, bytes, flag.startsWith('a') ? null : 0)
      this.#fds.delete(fake)
    })
    fsObj['ftruncateSync'] = guarded(real('ftruncateSync'), (_r, [fd, len]) => this.#truncated(fd, len ?? 0))
    for (const k of ['fsyncSync', 'fdatasyncSync'] as const) {
      const fn = real(k)
      fsObj[k] = (fd: number) => {
        if (this.#depth > 0) return fn(fd)
        const token = this.#syncStart(fd)
        fn(fd)
        this.#syncEnd(token)
      }
    }
    for (const k of ['fsync', 'fdatasync'] as const) {
      const fn = real(k)
      fsObj[k] = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
        if (this.#depth > 0) return fn(fd, cb)
        const token = this.#syncStart(fd)
        let finish: (() => void) | null = null
        let released = false
        const path = this.#fds.get(fd)?.node.path
        const holding = path != null && this.holdSync !== null && this.holdSync(path, () => {
          released = true
          finish?.()
        })
        fn(fd, (err: NodeJS.ErrnoException | null) => {
          finish = () => {
            if (err === null) this.#syncEnd(token)
            cb(err)
          }
          if (!holding || released) finish()
        })
      }
    }
    fsObj['renameSync'] = guarded(real('renameSync'), (_r, [a, b]) => {
      const from = this.#under(a)
      const to = this.#under(b)
      if (from !== null && to !== null) this.#renamed(from, to)
    })
    fsObj['rename'] = cbWrapped(real('rename'), ([a, b]) => {
      const from = this.#under(a)
      const to = this.#under(b)
      if (from !== null && to !== null) this.#renamed(from, to)
    })
    for (const k of ['rmSync', 'unlinkSync'] as const) {
      fsObj[k] = guarded(real(k), (_r, [p]) => {
        const abs = this.#under(p)
        if (abs !== null) this.#unlinked(abs)
      })
    }
    for (const k of ['rm', 'unlink'] as const) {
      fsObj[k] = cbWrapped(real(k), ([p]) => {
        const abs = this.#under(p)
        if (abs !== null) this.#unlinked(abs)
      })
    }
    fsObj['mkdirSync'] = (p: string, opts?: unknown) => {
      const abs = this.#under(p)
      if (abs === null || this.#depth > 0) return real('mkdirSync')(p, opts)
      const missing: string[] = []
      for (let d = abs; d !== this.root && this.#lookup(d) === null; d = dirname(d)) missing.unshift(d)
      this.#depth++
      let r: unknown
      try {
        r = real('mkdirSync')(p, opts)
      } finally {
        this.#depth--
      }
      for (const d of missing) this.#link(d, 'dir')
      return r
    }

    promises['open'] = async (p: unknown, flags?: unknown, mode?: unknown) => {
      const fh = await (this.#realPromises.get('open') as Fn)(p, flags, mode)
      const abs = this.#under(p)
      if (abs === null) return fh
      this.#opened(abs, flags ?? 'r', fh.fd)
      return this.#handle(fh)
    }
    promises['rename'] = async (a: unknown, b: unknown) => {
      await (this.#realPromises.get('rename') as Fn)(a, b)
      const from = this.#under(a)
      const to = this.#under(b)
      if (from !== null && to !== null) this.#renamed(from, to)
    }
    for (const k of ['rm', 'unlink'] as const) {
      promises[k] = async (p: unknown, opts?: unknown) => {
        await (this.#realPromises.get(k) as Fn)(p, opts)
        const abs = this.#under(p)
        if (abs !== null) this.#unlinked(abs)
      }
    }
    syncBuiltinESMExports()
  }

  /** A FileHandle whose writes, syncs and close are recorded. */
  #handle(fh: fs.promises.FileHandle): fs.promises.FileHandle {
    const fd = fh.fd
    const self = this
    const wrapped: Record<string, Fn> = {
      async writeFile(data: string | Uint8Array, opts?: unknown) {
        await fh.writeFile(data, opts as BufferEncoding)
        const bytes = typeof data === 'string' ? Buffer.from(data, typeof opts === 'string' ? (opts as BufferEncoding) : 'utf8') : bytesOf(data, 0, data.byteLength)
        self.#wrote(fd, bytes, null)
      },
      async write(buf: Uint8Array, off = 0, len?: number, position?: number | null) {
        const r = await fh.write(buf, off, len, position)
        self.#wrote(fd, bytesOf(buf, off, r.bytesWritten), position)
        return r
      },
      async truncate(len = 0) {
        await fh.truncate(len)
        self.#truncated(fd, len)
      },
      async sync() {
        const token = self.#syncStart(fd)
        await fh.sync()
        self.#syncEnd(token)
      },
      async datasync() {
        const token = self.#syncStart(fd)
        await fh.datasync()
        self.#syncEnd(token)
      },
      async close() {
        self.#fds.delete(fd)
        await fh.close()
      },
    }
    return new Proxy(fh, {
      get(target, prop, receiver) {
        if (typeof prop === 'string' && prop in wrapped) return wrapped[prop]
        const v = Reflect.get(target, prop, receiver)
        return typeof v === 'function' ? v.bind(target) : v
      },
    })
  }
}

function bytesOf(buf: ArrayBufferView, off: number, len: number): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + off, Math.max(0, len))
}

// --- the model --------------------------------------------------------------------------------

interface ModelFile { kind: 'file'; id: number; durable: Buffer; durableLen: number; ops: FileOp[]; synced: number }
interface ModelDir { kind: 'dir'; id: number; durable: Map<string, number>; current: Map<string, number>; ops: DirOp[]; synced: number }
type ModelNode = ModelFile | ModelDir

/** A seeded random source (mulberry32): the same seed builds the same images. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** What the page cache wrote back by itself before the power went. */
export type WritebackMode = 'nothing' | 'everything' | 'prefix' | 'subset'
export const WRITEBACK_MODES: readonly WritebackMode[] = ['nothing', 'everything', 'prefix', 'subset']

export interface CrashImage {
  mode: WritebackMode
  /** Node id of each path in the image (relative to the image root). */
  nodes: Map<string, number>
}

export class CrashModel {
  readonly #nodes = new Map<number, ModelNode>()
  readonly #syncs = new Map<number, { node: number; target: number }>()
  readonly rootId: number
  /** Events applied so far (the cut point the next image is taken at). */
  applied = 0

  constructor(recording: Recording) {
    this.rootId = 1
    this.#nodes.set(1, { kind: 'dir', id: 1, durable: new Map(), current: new Map(), ops: [], synced: 0 })
    const byPath = new Map<string, number>([[recording.root, 1]])
    for (const i of recording.initial) {
      const parent = this.#nodes.get(byPath.get(dirname(i.path)) as number) as ModelDir
      parent.durable.set(basename(i.path), i.node)
      parent.current.set(basename(i.path), i.node)
      byPath.set(i.path, i.node)
      if (i.kind === 'dir') this.#nodes.set(i.node, { kind: 'dir', id: i.node, durable: new Map(), current: new Map(), ops: [], synced: 0 })
      else this.#nodes.set(i.node, { kind: 'file', id: i.node, durable: Buffer.from(i.data as Buffer), durableLen: (i.data as Buffer).length, ops: [], synced: 0 })
    }
  }

  #file(id: number): ModelFile {
    let n = this.#nodes.get(id)
    if (n === undefined) {
      n = { kind: 'file', id, durable: Buffer.alloc(0), durableLen: 0, ops: [], synced: 0 }
      this.#nodes.set(id, n)
    }
    return n as ModelFile
  }

  #dir(id: number): ModelDir {
    let n = this.#nodes.get(id)
    if (n === undefined) {
      n = { kind: 'dir', id, durable: new Map(), current: new Map(), ops: [], synced: 0 }
      this.#nodes.set(id, n)
    }
    return n as ModelDir
  }

  /** Applies the next event of the recording. */
  apply(ev: CrashEvent): void {
    this.applied++
    switch (ev.t) {
      case 'write':
      case 'trunc':
        this.#file(ev.node).ops.push(ev)
        return
      case 'link':
        if (ev.kind === 'dir') this.#dir(ev.node)
        else this.#file(ev.node)
        this.#dirOp(ev)
        return
      case 'unlink':
      case 'rename':
        this.#dirOp(ev)
        return
      case 'syncStart': {
        const n = this.#nodes.get(ev.node)
        if (n !== undefined) this.#syncs.set(ev.token, { node: ev.node, target: n.ops.length })
        return
      }
      case 'syncEnd': {
        const s = this.#syncs.get(ev.token)
        this.#syncs.delete(ev.token)
        if (s !== undefined) this.#makeDurable(this.#nodes.get(s.node) as ModelNode, s.target)
        return
      }
      case 'writeback':
        for (const n of this.#nodes.values()) this.#makeDurable(n, n.ops.length)
        return
    }
  }

  #dirOp(op: DirOp): void {
    const d = this.#dir(op.dir)
    d.ops.push(op)
    applyDirOp(d.current, op)
  }

  #makeDurable(n: ModelNode, target: number): void {
    if (n.kind === 'dir') {
      for (; n.synced < target; n.synced++) applyDirOp(n.durable, n.ops[n.synced] as DirOp)
      return
    }
    for (; n.synced < target; n.synced++) {
      const r = applyFileOp(n.durable, n.durableLen, n.ops[n.synced] as FileOp, Infinity)
      n.durable = r.buf
      n.durableLen = r.len
    }
  }

  /** Whether a power cut now leaves the node reachable: its name, and its directory's, are durable. */
  durablyLinked(node: number): boolean {
    if (node === this.rootId) return true
    for (const n of this.#nodes.values()) {
      if (n.kind !== 'dir') continue
      for (const id of n.durable.values()) if (id === node) return this.durablyLinked(n.id)
    }
    return false
  }

  /** The bytes of a file that are durable now (tests of the model). */
  durableBytes(node: number): Buffer {
    const n = this.#file(node)
    return n.durable.subarray(0, n.durableLen)
  }

  /** Builds, in `dir` (created), the files as a power cut now would leave them. */
  image(dir: string, rand: () => number, mode: WritebackMode = WRITEBACK_MODES[Math.floor(rand() * WRITEBACK_MODES.length)] as WritebackMode): CrashImage {
    const nodes = new Map<string, number>()
    const contents = new Map<number, Buffer>()
    const build = (d: ModelDir, path: string, rel: string, seen: Set<number>): void => {
      cjs.mkdirSync(path, { recursive: true })
      const entries = new Map(d.durable)
      const pending = d.ops.slice(d.synced)
      for (const op of chooseOps(pending, rand, mode).ops) applyDirOp(entries, op)
      for (const [name, id] of entries) {
        const n = this.#nodes.get(id)
        if (n === undefined) continue
        const p = join(path, name)
        const r = rel === '' ? name : `${rel}/${name}`
        nodes.set(r, id)
        if (n.kind === 'dir') {
          if (!seen.has(id)) build(n, p, r, new Set(seen).add(id))
          continue
        }
        let bytes = contents.get(id)
        if (bytes === undefined) {
          bytes = this.#crashContent(n, rand, mode)
          contents.set(id, bytes)
        }
        cjs.writeFileSync(p, bytes)
      }
    }
    build(this.#nodes.get(this.rootId) as ModelDir, dir, '', new Set([this.rootId]))
    return { mode, nodes }
  }

  #crashContent(n: ModelFile, rand: () => number, mode: WritebackMode): Buffer {
    let buf: Buffer = Buffer.from(n.durable.subarray(0, n.durableLen))
    let len = n.durableLen
    const chosen = chooseOps(n.ops.slice(n.synced), rand, mode)
    for (let i = 0; i < chosen.ops.length; i++) {
      const op = chosen.ops[i] as FileOp
      const tear = chosen.torn[i] === true && op.t === 'write' ? Math.floor(rand() * op.data.length) : Infinity
      const r = applyFileOp(buf, len, op, tear)
      buf = r.buf
      len = r.len
    }
    return buf.subarray(0, len)
  }
}

/** The unsynced operations the page cache happened to write back, in order, and which of them it tore. */
function chooseOps<T>(pending: T[], rand: () => number, mode: WritebackMode): { ops: T[]; torn: boolean[] } {
  if (pending.length === 0 || mode === 'nothing') return { ops: [], torn: [] }
  if (mode === 'everything') return { ops: pending, torn: [] }
  if (mode === 'prefix') {
    const n = Math.floor(rand() * (pending.length + 1))
    const torn: boolean[] = []
    if (n > 0) torn[n - 1] = rand() < 0.7
    return { ops: pending.slice(0, n), torn }
  }
  const ops: T[] = []
  const torn: boolean[] = []
  for (const op of pending) {
    if (rand() < 0.5) continue
    torn[ops.length] = rand() < 0.3
    ops.push(op)
  }
  return { ops, torn }
}

function applyDirOp(entries: Map<string, number>, op: DirOp): void {
  if (op.t === 'link') entries.set(op.name, op.node)
  else if (op.t === 'unlink') entries.delete(op.name)
  else if (entries.get(op.from) === op.node) {
    // a rename whose source was never durable (and not written back) does nothing
    entries.delete(op.from)
    entries.set(op.to, op.node)
  }
}

/** A write (its first `tear` bytes only) or a truncation applied to buf[0, len). */
function applyFileOp(buf: Buffer, len: number, op: FileOp, tear: number): { buf: Buffer; len: number } {
  if (op.t === 'trunc') {
    if (op.len > len) {
      buf = grow(buf, op.len)
      buf.fill(0, len, op.len)
    }
    return { buf, len: op.len }
  }
  const n = Math.min(op.data.length, tear)
  const end = op.pos + n
  if (end > buf.length) buf = grow(buf, end)
  if (op.pos > len) buf.fill(0, len, op.pos) // a hole reads as zeros
  op.data.copy(buf, op.pos, 0, n)
  return { buf, len: Math.max(len, end) }
}

function grow(buf: Buffer, min: number): Buffer {
  const next = Buffer.alloc(Math.max(min, buf.length * 2, 4096))
  buf.copy(next)
  return next
}
