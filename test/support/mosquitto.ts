import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './free-port.ts'

/** Debian's mosquitto, run by a test as the reference for what a real broker does. */
export interface StartedMosquitto {
  proc: ChildProcess
  port: number
  url: string
  stop(): Promise<void>
}


/** Starts mosquitto on a free loopback port, anonymous, no persistence, plus `conf` lines. */
export async function startMosquitto(conf: string[] = []): Promise<StartedMosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'edgebus-mosquitto-'))
  const port = await freePort()
  const file = join(dir, 'mosquitto.conf')
  writeFileSync(file, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', ...conf, ''].join('\n'))
  const proc = spawn('mosquitto', ['-c', file], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  const deadline = Date.now() + 5000
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`mosquitto exited with ${proc.exitCode}: ${stderr}`)
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (up) break
    if (Date.now() > deadline) {
      proc.kill('SIGKILL')
      throw new Error(`mosquitto did not listen on ${port} in 5 s: ${stderr}`)
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  return {
    proc,
    port,
    url: `mqtt://127.0.0.1:${port}`,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM')
      await exited
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
