import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { clusterSettings } from '../../src/cluster/cluster-config.ts'
import { loadConfig, printableConfig } from '../../src/config/load.ts'

const dirs: string[] = []
const temp = (): string => { const d = mkdtempSync(join(tmpdir(), 'edgebus-cluster-cfg-')); dirs.push(d); return d }
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }) })

const base = { urls: 'nats://127.0.0.1:4222', name: 'site', nodeId: '', user: '', password: '', token: '', tlsCa: '', tlsCert: '', tlsKey: '', replicas: 1 }

describe('cluster settings', () => {
  it('are off with no cluster.urls: a node on its own', async () => {
    const { config } = loadConfig({ env: {}, cwd: temp() })
    expect(config.cluster.urls).toBe('')
    expect(await clusterSettings(config.cluster, temp())).toBeNull()
  })

  it('come from the file section and the environment like every key', () => {
    const dir = temp()
    writeFileSync(join(dir, 'edgebus.json'), JSON.stringify({ cluster: { urls: 'nats://10.0.0.1:4222', name: 'site', replicas: 3 } }))
    const { config } = loadConfig({ env: { EDGEBUS_CLUSTER_NODE_ID: 'east-1' }, cwd: dir })
    expect(config.cluster).toMatchObject({ urls: 'nats://10.0.0.1:4222', name: 'site', replicas: 3, nodeId: 'east-1' })
  })

  it('never print the NATS password or token (--print-config)', () => {
    const { config } = loadConfig({ env: { EDGEBUS_CLUSTER_URLS: 'nats://n1:4222', EDGEBUS_CLUSTER_PASSWORD: 's3cret', EDGEBUS_CLUSTER_TOKEN: 't0ken', EDGEBUS_CLUSTER_USER: 'edge' }, cwd: temp() })
    const printed = JSON.stringify(printableConfig(config))
    expect(printed).not.toContain('s3cret')
    expect(printed).not.toContain('t0ken')
    expect(printableConfig(config).cluster).toMatchObject({ user: 'edge', password: '(set)', token: '(set)' })
  })

  it('keep a made-up node id in <dataDir>/cluster/node-id, the same on the next start', async () => {
    const data = temp()
    const first = await clusterSettings(base, data)
    expect(first?.nodeId).toMatch(/^n[0-9a-f]{12}$/)
    expect(readFileSync(join(data, 'cluster', 'node-id'), 'utf8').trim()).toBe(first?.nodeId)
    expect((await clusterSettings(base, data))?.nodeId).toBe(first?.nodeId)
  })

  it('replace a damaged node-id file instead of refusing to start', async () => {
    const data = temp()
    mkdirSync(join(data, 'cluster'))
    writeFileSync(join(data, 'cluster', 'node-id'), 'not a valid id!\n')
    expect((await clusterSettings(base, data))?.nodeId).toMatch(/^n[0-9a-f]{12}$/)
  })

  it.each([
    [{ urls: 'http://x:80' }, 'cluster.urls'],
    [{ urls: 'nats://a b:4222' }, 'cluster.urls'],
    [{ name: 'a.b' }, 'cluster.name'],
    [{ nodeId: 'x y' }, 'cluster.nodeId'],
    [{ replicas: 2 }, 'cluster.replicas'],
    [{ tlsCert: '/c.pem' }, 'cluster.tlsKey'],
  ])('refuse %j naming the key and the fix', async (bad, key) => {
    await expect(clusterSettings({ ...base, ...bad }, temp())).rejects.toMatchObject({ code: 'ECONFIG_INVALID', detail: { key }, message: expect.stringContaining(key) })
  })

  it('turn on TLS to NATS for tls:// servers or a CA file', async () => {
    expect((await clusterSettings({ ...base, urls: 'tls://n1:4222' }, temp()))?.tls).toEqual({})
    expect((await clusterSettings({ ...base, tlsCa: '/ca.pem' }, temp()))?.tls).toEqual({ caFile: '/ca.pem' })
    expect((await clusterSettings(base, temp()))?.tls).toBeNull()
  })
})
