import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import type { EdgebusConfig } from '../config/schema.ts'

/** The `cluster` keys once checked: what the NATS link and the cluster's parts need. */
export interface ClusterSettings {
  readonly servers: string[]
  readonly name: string
  readonly nodeId: string
  /** Every subject of this cluster starts with it: `eb.<name>.` */
  readonly prefix: string
  readonly user: string
  readonly password: string
  readonly token: string
  readonly tls: { caFile?: string; certFile?: string; keyFile?: string } | null
  readonly replicas: number
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/

/** The cluster's settings, or null when `cluster.urls` is empty (a node on its own: nothing changes). */
export async function clusterSettings(c: EdgebusConfig['cluster'], dataDir: string): Promise<ClusterSettings | null> {
  const urls = c.urls.split(',').map((u) => u.trim()).filter(Boolean)
  if (urls.length === 0) return null
  for (const u of urls) {
    if (!/^((nats|tls):\/\/)?[^\s/:]+(:\d{1,5})?$/.test(u)) {
      throw new EdgebusError('ECONFIG_INVALID', `config key "cluster.urls": ${JSON.stringify(u)} is not a NATS server address; write nats://host:4222 (or tls://host:4222), several separated by commas`, { key: 'cluster.urls', value: u })
    }
  }
  if (!NAME.test(c.name)) {
    throw new EdgebusError('ECONFIG_INVALID', `config key "cluster.name": ${JSON.stringify(c.name)} is not valid; use 1 to 64 letters, digits, '-' or '_' (it becomes a NATS subject token)`, { key: 'cluster.name' })
  }
  if (c.nodeId !== '' && !NAME.test(c.nodeId)) {
    throw new EdgebusError('ECONFIG_INVALID', `config key "cluster.nodeId": ${JSON.stringify(c.nodeId)} is not valid; use 1 to 64 letters, digits, '-' or '_', or leave it empty for one kept in <dataDir>/cluster/node-id`, { key: 'cluster.nodeId' })
  }
  if (![1, 3, 5].includes(c.replicas)) {
    throw new EdgebusError('ECONFIG_INVALID', `config key "cluster.replicas": ${c.replicas} is not valid; use 1, 3 or 5 (JetStream replicates by Raft, which wants an odd number)`, { key: 'cluster.replicas' })
  }
  if ((c.tlsCert === '') !== (c.tlsKey === '')) {
    throw new EdgebusError('ECONFIG_INVALID', 'config keys "cluster.tlsCert" and "cluster.tlsKey" go together: set both or neither', { key: c.tlsCert === '' ? 'cluster.tlsCert' : 'cluster.tlsKey' })
  }
  const tlsWanted = c.tlsCa !== '' || c.tlsCert !== '' || urls.some((u) => u.startsWith('tls://'))
  return {
    servers: urls,
    name: c.name,
    nodeId: c.nodeId !== '' ? c.nodeId : await keptNodeId(join(dataDir, 'cluster')),
    prefix: `eb.${c.name}.`,
    user: c.user,
    password: c.password,
    token: c.token,
    tls: tlsWanted ? { ...(c.tlsCa !== '' ? { caFile: c.tlsCa } : {}), ...(c.tlsCert !== '' ? { certFile: c.tlsCert, keyFile: c.tlsKey } : {}) } : null,
    replicas: c.replicas,
  }
}

/** A node id made up on the first start and kept, so a restarted node is the same node. */
async function keptNodeId(dir: string): Promise<string> {
  const file = join(dir, 'node-id')
  try {
    const id = (await readFile(file, 'utf8')).trim()
    if (NAME.test(id)) return id
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  // a damaged file gets a new id: the node is then a new node to the others, which is safe
  const id = `n${randomBytes(6).toString('hex')}`
  await mkdir(dir, { recursive: true })
  await writeFile(`${file}.tmp`, `${id}\n`)
  await rename(`${file}.tmp`, file)
  return id
}
