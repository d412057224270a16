#!/usr/bin/env node
// Runs a Python script in the real MicroPython VM (the WebAssembly port from npm)
// with a working `socket` module, so edgebus.py is exercised on MicroPython itself.
//
//   node run.mjs [--heap] [SCRIPT.py [ARGS...]]
//
// The VM runs on this thread and cannot await: each socket call posts a request to
// net-worker.mjs and sleeps in Atomics.wait until the worker has done the I/O and
// flipped a flag in shared memory; the answer is then taken off the MessagePort
// synchronously with receiveMessageOnPort.
// --heap prints "HEAP edgebus import bytes=N" (gc.mem_alloc() around `import edgebus`).
// The package is found through EDGEBUS_MICROPYTHON (its directory or micropython.mjs)
// or else as @micropython/micropython-webassembly-pyscript from node_modules.
import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads'

const HERE = dirname(fileURLToPath(import.meta.url))
const PKG = '@micropython/micropython-webassembly-pyscript'

async function loadPackage() {
  const where = process.env.EDGEBUS_MICROPYTHON
  const spec = where ? pathToFileURL(where.endsWith('.mjs') ? resolve(where) : join(resolve(where), 'micropython.mjs')).href : PKG
  try {
    return await import(spec)
  } catch (err) {
    process.stderr.write(`cannot load ${spec}: ${err.message}\n` +
      `install it (npm install --save-dev ${PKG}@1.27.0) or set EDGEBUS_MICROPYTHON\n`)
    process.exit(3)
  }
}

function startNetwork() {
  const signal = new SharedArrayBuffer(4)
  const flag = new Int32Array(signal)
  const { port1, port2 } = new MessageChannel()
  const worker = new Worker(join(HERE, 'net-worker.mjs'), { workerData: { port: port2, signal }, transferList: [port2] })
  worker.on('error', (err) => { process.stderr.write(`net worker: ${err.stack}\n`); process.exit(4) })
  // One request at a time: post it, sleep until the worker flips the flag, take the answer.
  const call = (msg) => {
    Atomics.store(flag, 0, 0)
    port1.postMessage(msg)
    Atomics.wait(flag, 0, 0)
    let got = receiveMessageOnPort(port1)
    while (!got) { // the flag can beat the message by a hair: wait for it
      Atomics.wait(flag, 0, 1, 1)
      got = receiveMessageOnPort(port1)
    }
    return got.message
  }
  const result = (r, key) => (r.err ? -r.err : r[key])
  const ebnet = {
    connect: (host, port, timeout) => result(call({ op: 'connect', host, port, timeout }), 'fd'),
    send: (fd, hex) => result(call({ op: 'send', fd, hex }), 'n'),
    recv: (fd, n, timeout) => result(call({ op: 'recv', fd, n, timeout }), 'data'),
    close: (fd) => { call({ op: 'close', fd }); return 0 },
  }
  return { ebnet, stop: () => worker.terminate() }
}

const args = process.argv.slice(2)
const heap = args[0] === '--heap'
if (heap) args.shift()
if (args.length < 1 && !heap) {
  process.stderr.write('usage: node run.mjs [--heap] [SCRIPT.py [ARGS...]]\n')
  process.exit(2)
}
const script = args[0]

const { loadMicroPython } = await loadPackage()
const mp = await loadMicroPython({
  heapsize: 256 * 1024,
  stdout: (line) => process.stdout.write(line + '\n'),
  stderr: (line) => process.stderr.write(line + '\n'),
})
const net = startNetwork()
mp.registerJsModule('_ebnet', net.ebnet)
mp.FS.mkdir('/lib')
mp.FS.writeFile('/lib/socket.py', readFileSync(join(HERE, 'socket.py')))
mp.FS.writeFile('/lib/edgebus.py', readFileSync(join(HERE, '..', 'edgebus.py')))

let code = 0
try {
  mp.runPython(`import sys\nsys.argv.clear()\nsys.argv.extend(${JSON.stringify(args)})`)
  if (heap) {
    // socket and time are built-in C modules on a device: import them first so only
    // edgebus's own code and objects are counted.
    mp.runPython(`import gc, socket, time
gc.collect()
_before = gc.mem_alloc()
import edgebus
gc.collect()
print("HEAP edgebus import bytes=%d" % (gc.mem_alloc() - _before))`)
  }
  if (script) mp.runPython(readFileSync(script, 'utf8'))
} catch (err) {
  if (err.name !== 'PythonError') throw err
  if (err.type !== 'SystemExit') {
    process.stderr.write(err.message + '\n')
    code = 1
  }
}
await net.stop()
process.exit(code)
