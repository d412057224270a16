import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './free-port.ts'


export interface NatsNode {
  name: string
  port: number
  url: string
  proc: ChildProcess
  output: string[]
  kill(): Promise<void>
}

export interface NatsCluster {
  nodes: NatsNode[]
  /** Every client URL, comma-separated (cluster.urls). */
  urls: string
  stop(): Promise<void>
}

/**
 * Starts a nats-server cluster on loopback (Debian nats-server 2.9): `size` servers with JetStream,
 * each with its own store dir, routed to each other (size 1: one plain server); resolves once every
 * server says it is ready.
 */
export async function startNatsCluster(size = 3, clusterName = 'ebtest'): Promise<NatsCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'edgebus-nats-'))
  const ports = await Promise.all(Array.from({ length: size }, freePort))
  const routePorts = await Promise.all(Array.from({ length: size }, freePort))
  const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`).join(',')
  const nodes = await Promise.all(ports.map((port, i) => startNode(`n${i + 1}`, port, routePorts[i] as number, routes, clusterName, join(dir, `n${i + 1}`))))
  return {
    nodes,
    urls: nodes.map((n) => n.url).join(','),
    async stop() {
      await Promise.all(nodes.map((n) => n.kill()))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

function startNode(name: string, port: number, routePort: number, routes: string, clusterName: string, storeDir: string): Promise<NatsNode> {
  // one server is no cluster (JetStream would wait for a quorum of peers that never come)
  const clustered = routes.includes(',') ? ['--cluster', `nats://127.0.0.1:${routePort}`, '--routes', routes, '--cluster_name', clusterName] : []
  const proc = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-n', name, '-js', '-sd', storeDir, ...clustered], { stdio: ['ignore', 'pipe', 'pipe'] })
  const output: string[] = []
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  const node: NatsNode = {
    name, port, url: `nats://127.0.0.1:${port}`, proc, output,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
      await exited
    },
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`nats-server ${name} did not start:\n${output.join('')}`)) }, 10_000)
    const onData = (d: Buffer): void => {
      output.push(d.toString())
      if (output.join('').includes('Server is ready')) { clearTimeout(timer); resolve(node) }
    }
    proc.stdout!.on('data', onData)
    proc.stderr!.on('data', onData)
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`nats-server ${name} exited with ${code}:\n${output.join('')}`)) })
  })
}
