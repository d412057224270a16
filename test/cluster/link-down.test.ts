import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'
import { startNatsCluster, type NatsCluster } from '../support/nats-cluster.ts'

/** One node on one nats-server that then dies: what the node does while it has no NATS link. */
let nats: NatsCluster
let node: StartedEdgebus

beforeAll(async () => {
  nats = await startNatsCluster(1, 'ebdown')
  node = await startEdgebus({ config: { cluster: { urls: nats.urls, name: 'down', nodeId: 'solo' }, sys: { interval: 0 } } })
}, 30_000)

afterAll(async () => {
  await endAllClients()
  await node?.kill()
  await nats?.stop()
})

describe('with the NATS link down', () => {
  it('local clients keep flowing, messages for the cluster are dropped and counted, retained publishes are refused with a reason', async () => {
    const sub = await connectClient(node.mqttUrl, { protocolVersion: 5 })
    await sub.client.subscribeAsync('local/#', { qos: 1 })
    const pub = await connectClient(node.mqttUrl, { protocolVersion: 5 })
    await nats.nodes[0]!.kill()
    await vi.waitFor(async () => expect(((await (await fetch(`${node.httpUrl}/api/cluster`)).json()) as { link: { state: string } }).link.state).toBe('reconnecting'))
    await pub.client.publishAsync('local/x', 'still here', { qos: 1 })
    await vi.waitFor(() => expect(sub.messages.map((m) => m.payload)).toContain('still here'))
    // the retained message cannot be replicated: the publisher is told (PUBACK 0x80), not left to believe it is kept
    await expect(pub.client.publishAsync('local/state', 'on', { qos: 1, retain: true })).rejects.toMatchObject({ code: 0x80 })
    const metrics = await (await fetch(`${node.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/edgebus_cluster_link_up\{node="solo"\} 0/)
    expect(Number(/edgebus_cluster_messages_total\{direction="dropped"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2)
    expect(node.output.some((l) => l.includes('"ECLUSTER_LINK"'))).toBe(true)
  })
})
