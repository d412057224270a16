import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { WebSocket } from 'ws'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, type TestClient } from '../support/mqtt.ts'
import { startNatsCluster, type NatsCluster } from '../support/nats-cluster.ts'

/**
 * Three edgebus nodes (a, b, c) on a three-server nats-server cluster with JetStream, all on
 * loopback: they act as one broker. Each scenario of issue 17's acceptance list is one test.
 */

let nats: NatsCluster
const nodes: Record<string, StartedEdgebus> = {}
const extra: StartedEdgebus[] = []

function nodeConfig(id: string, urls: string): Record<string, unknown> {
  // node c keeps a stream: it captures what is published anywhere in the cluster
  return { cluster: { urls, name: 't17', nodeId: id, replicas: 3 }, sys: { interval: 0 }, ...(id === 'c' ? { streams: [{ name: 'captured', subjects: ['cap.>'] }] } : {}) }
}

beforeAll(async () => {
  nats = await startNatsCluster(3)
  // nats.js picks a server of the list at random: the three links spread over the cluster
  const started = await Promise.all(['a', 'b', 'c'].map((id) => startEdgebus({ config: nodeConfig(id, nats.urls) })))
  ;['a', 'b', 'c'].forEach((id, i) => { nodes[id] = started[i] as StartedEdgebus })
  // every node hears the other two
  await vi.waitFor(async () => {
    for (const n of started) expect((await cluster(n)).nodes).toHaveLength(3)
  }, { timeout: 10_000, interval: 100 })
}, 40_000)

afterAll(async () => {
  await endAllClients()
  await Promise.all([...Object.values(nodes), ...extra].map((n) => n.kill()))
  await nats?.stop()
})

async function cluster(n: StartedEdgebus): Promise<{ node: string; link: { state: string; server: string }; nodes: Array<{ id: string; clients: number }>; messages: { sent: number; received: number } }> {
  const res = await fetch(`${n.httpUrl}/api/cluster`)
  expect(res.status).toBe(200)
  return await res.json() as never
}

/**
 * NATS spreads a new subscription's interest over the routes in a moment, after the SUBACK: a
 * probe is published on `from` until `sub` has it, then the test's own messages follow.
 */
async function interestReady(from: TestClient, sub: TestClient, topic: string): Promise<void> {
  await vi.waitFor(() => {
    from.client.publish(topic, 'probe')
    expect(sub.messages.some((m) => m.topic === topic && m.payload === 'probe')).toBe(true)
  }, { timeout: 5_000, interval: 50 })
}

describe('a message published on one node', () => {
  it('reaches subscribers on another node over MQTT 3.1.1, MQTT 5 and WebSocket, once each, with its MQTT 5 properties', async () => {
    const v311 = await connectClient(nodes.c!.mqttUrl, { protocolVersion: 4 })
    const v5 = await connectClient(nodes.c!.mqttUrl, { protocolVersion: 5 })
    const ws = await connectClient(nodes.c!.wsUrl, { protocolVersion: 5 })
    await Promise.all([v311, v5, ws].map((c) => c.client.subscribeAsync('farm/+/temp', { qos: 1 })))
    // overlapping filters of one client: still one copy
    await v5.client.subscribeAsync('farm/#', { qos: 1 })
    const pub = await connectClient(nodes.a!.mqttUrl, { protocolVersion: 5 })
    await interestReady(pub, v311, 'farm/probe/temp')
    await interestReady(pub, v5, 'farm/probe/temp')
    await interestReady(pub, ws, 'farm/probe/temp')
    await pub.client.publishAsync('farm/barn/temp', '21.5', {
      qos: 1, properties: { contentType: 'text/plain', responseTopic: 'farm/reply', correlationData: Buffer.from([1, 2, 0xff]), userProperties: { unit: 'C', line: 'two\nlines' }, payloadFormatIndicator: true },
    })
    await pub.client.publishAsync('farm/end/temp', 'end', { qos: 1 })
    for (const c of [v311, v5, ws]) {
      await vi.waitFor(() => expect(c.messages.some((m) => m.topic === 'farm/end/temp')).toBe(true))
      expect(c.messages.filter((m) => m.topic === 'farm/barn/temp').map((m) => m.payload)).toEqual(['21.5'])
    }
    const got = v5.messages.find((m) => m.topic === 'farm/barn/temp')!
    expect(got.qos).toBe(1)
    expect(got.properties).toMatchObject({ contentType: 'text/plain', responseTopic: 'farm/reply', userProperties: { unit: 'C', line: 'two\nlines' }, payloadFormatIndicator: true })
    expect(Buffer.from(got.properties!.correlationData as Buffer)).toEqual(Buffer.from([1, 2, 0xff]))
  })

  it('is not sent back to the node it came from: a subscriber there gets it once', async () => {
    const here = await connectClient(nodes.a!.mqttUrl)
    const there = await connectClient(nodes.b!.mqttUrl)
    await here.client.subscribeAsync('echo/#')
    await there.client.subscribeAsync('echo/#')
    const pub = await connectClient(nodes.a!.mqttUrl)
    await interestReady(pub, there, 'echo/probe')
    for (let i = 0; i < 20; i++) pub.client.publish('echo/x', String(i))
    await pub.client.publishAsync('echo/end', 'end', { qos: 1 })
    for (const c of [here, there]) {
      await vi.waitFor(() => expect(c.messages.some((m) => m.topic === 'echo/end')).toBe(true))
      expect(c.messages.filter((m) => m.topic === 'echo/x').map((m) => m.payload)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)))
    }
  })

  it('keeps topics NATS cannot spell (spaces, dots, empty levels) byte for byte', async () => {
    const sub = await connectClient(nodes.c!.mqttUrl)
    await sub.client.subscribeAsync('odd/#')
    const pub = await connectClient(nodes.a!.mqttUrl)
    await interestReady(pub, sub, 'odd/probe')
    const topics = ['odd/with space/x', 'odd/a.b/c', 'odd//empty', 'odd/100%/*/>']
    for (const t of topics) await pub.client.publishAsync(t, t, { qos: 1 })
    await vi.waitFor(() => expect(sub.messages.filter((m) => m.payload !== 'probe').map((m) => m.topic)).toEqual(topics))
  })

  it('reaches /ws on another node, and an HTTP publish on one node reaches MQTT on another', async () => {
    const ws = new WebSocket(`${nodes.c!.httpUrl.replace('http', 'ws')}/ws`)
    const frames: Array<Record<string, unknown>> = []
    ws.on('message', (d) => frames.push(JSON.parse(String(d)) as Record<string, unknown>))
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    ws.send(JSON.stringify({ op: 'sub', filter: 'web.*', id: '1' }))
    await vi.waitFor(() => expect(frames.some((f) => f.id === '1' && f.op === 'ok')).toBe(true))
    const mqttSub = await connectClient(nodes.b!.mqttUrl)
    await mqttSub.client.subscribeAsync('web/+')
    const probe = await connectClient(nodes.a!.mqttUrl)
    await interestReady(probe, mqttSub, 'web/probe')
    await vi.waitFor(() => {
      probe.client.publish('web/probe', 'p')
      expect(frames.some((f) => f.op === 'msg' && f.subject === 'web.probe')).toBe(true)
    }, { timeout: 5_000, interval: 50 })
    const res = await fetch(`${nodes.a!.httpUrl}/api/publish/web.http?qos=1`, { method: 'POST', body: 'from http' })
    expect(res.status).toBe(200)
    await vi.waitFor(() => {
      expect(mqttSub.messages.some((m) => m.topic === 'web/http' && m.payload === 'from http')).toBe(true)
      expect(frames.some((f) => f.op === 'msg' && f.subject === 'web.http' && f.payload === 'from http')).toBe(true)
    })
    ws.close()
  })
})

describe('streams', () => {
  it('a stream on one node captures what is published on the others, in order, once', async () => {
    const pub = await connectClient(nodes.a!.mqttUrl)
    const probe = await connectClient(nodes.c!.mqttUrl)
    await probe.client.subscribeAsync('cap/#')
    await interestReady(pub, probe, 'cap/probe') // the stream's own interest was there from the start
    await probe.end()
    for (let i = 0; i < 5; i++) await pub.client.publishAsync('cap/x', `m${i}`, { qos: 1 })
    await vi.waitFor(async () => {
      const text = await (await fetch(`${nodes.c!.httpUrl}/api/streams/captured/messages?filter=cap.x&limit=0`)).text()
      const rows = text.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { payload: string }).payload)
      expect(rows).toEqual(['m0', 'm1', 'm2', 'm3', 'm4'])
    })
  })
})

describe('topics too long for a NATS subject', () => {
  it('stay on their node: delivered there, and the link to NATS stays up for everyone else', async () => {
    const long = `long/${'x'.repeat(5000)}`
    const here = await connectClient(nodes.a!.mqttUrl)
    const there = await connectClient(nodes.b!.mqttUrl)
    await here.client.subscribeAsync('long/#')
    await there.client.subscribeAsync(long) // a SUB line over nats-server's max_control_line would close the link
    await there.client.subscribeAsync('long/short')
    const pub = await connectClient(nodes.a!.mqttUrl)
    await interestReady(pub, there, 'long/short')
    await pub.client.publishAsync(long, 'big topic', { qos: 1 })
    await vi.waitFor(() => expect(here.messages.some((m) => m.topic === long)).toBe(true))
    await pub.client.publishAsync('long/short', 'after', { qos: 1 })
    await vi.waitFor(() => expect(there.messages.filter((m) => m.payload === 'after')).toHaveLength(1))
    expect(there.messages.some((m) => m.topic === long)).toBe(false)
    for (const n of [nodes.a!, nodes.b!]) expect((await cluster(n)).link).toMatchObject({ state: 'connected', reconnects: 0 })
  })
})

describe('shared subscriptions', () => {
  it('give each message to one member of a group spread over three nodes', async () => {
    const members = await Promise.all(['a', 'b', 'c'].map((id) => connectClient(nodes[id]!.mqttUrl, { protocolVersion: 5 })))
    await Promise.all(members.map((m) => m.client.subscribeAsync('$share/workers/jobs/#', { qos: 1 })))
    const watcher = await connectClient(nodes.c!.mqttUrl)
    await watcher.client.subscribeAsync('jobs/#')
    const pub = await connectClient(nodes.a!.mqttUrl)
    await interestReady(pub, watcher, 'jobs/probe')
    // the queue group's interest reaches every server too: wait until each member has had a probe
    await vi.waitFor(() => {
      pub.client.publish('jobs/probe', 'probe')
      for (const m of members) expect(m.messages.length).toBeGreaterThan(0)
    }, { timeout: 10_000, interval: 20 })
    for (const m of members) m.messages.length = 0
    const n = 60
    for (let i = 0; i < n; i++) await pub.client.publishAsync('jobs/run', String(i), { qos: 1 })
    await vi.waitFor(() => expect(members.flatMap((m) => m.messages).filter((m) => m.topic === 'jobs/run')).toHaveLength(n))
    const all = members.flatMap((m) => m.messages).filter((m) => m.topic === 'jobs/run').map((m) => Number(m.payload))
    expect(new Set(all).size).toBe(n)
    // NATS picks a queue member at random: with 60 messages every node has some
    for (const m of members) expect(m.messages.filter((x) => x.topic === 'jobs/run').length).toBeGreaterThan(0)
  })
})

describe('retained messages', () => {
  it('set on one node are seen by a new subscriber on another, and by a node that starts later', async () => {
    const pub = await connectClient(nodes.a!.mqttUrl)
    await pub.client.publishAsync('state/door', 'open', { qos: 1, retain: true })
    await vi.waitFor(async () => {
      const late = await connectClient(nodes.b!.mqttUrl)
      await late.client.subscribeAsync('state/#')
      await late.waitFor(1, 500).finally(() => late.end())
      expect(late.messages[0]).toMatchObject({ topic: 'state/door', payload: 'open', retain: true })
    }, { timeout: 5_000, interval: 50 })
    // the PUBACK came after JetStream stored it: a node started now reads it from the replicated stream
    const d = await startEdgebus({ config: nodeConfig('d', nats.urls) })
    extra.push(d)
    const sub = await connectClient(d.mqttUrl)
    await sub.client.subscribeAsync('state/#')
    expect((await sub.waitFor(1))[0]).toMatchObject({ topic: 'state/door', payload: 'open', retain: true })
    // cleared on one node: cleared everywhere
    await pub.client.publishAsync('state/door', '', { qos: 1, retain: true })
    await vi.waitFor(async () => {
      const again = await connectClient(nodes.c!.mqttUrl)
      await again.client.subscribeAsync('state/#')
      await new Promise((r) => setTimeout(r, 100))
      await again.end()
      expect(again.messages).toEqual([])
    }, { timeout: 5_000, interval: 50 })
    await d.stop()
  })
})

describe('persistent sessions', () => {
  it('a session away from its node still gets what is published on another node, queued there until it is back', async () => {
    const away = await connectClient(nodes.c!.mqttUrl, { clientId: 'keeper', clean: false })
    await away.client.subscribeAsync('queued/#', { qos: 1 })
    const pub = await connectClient(nodes.a!.mqttUrl)
    await interestReady(pub, away, 'queued/probe')
    await away.end()
    await pub.client.publishAsync('queued/x', 'while away', { qos: 1 })
    // the message crosses to c while nobody is connected there: c queues it for the session
    await vi.waitFor(async () => expect((await cluster(nodes.c!)).messages.received).toBeGreaterThan(0))
    const back = await connectClient(nodes.c!.mqttUrl, { clientId: 'keeper', clean: false })
    await vi.waitFor(() => expect(back.messages.map((m) => m.payload)).toContain('while away'))
  })
})

describe('client identifiers', () => {
  it('a client that connects to node B with the id it holds on node A takes over: A closes the old connection', async () => {
    const old = await connectClient(nodes.a!.mqttUrl, { clientId: 'dev-17', protocolVersion: 5 })
    const disconnected = new Promise<number | undefined>((resolve) => old.client.once('disconnect', (p) => resolve(p.reasonCode)))
    const closed = new Promise<void>((resolve) => old.client.once('close', () => resolve()))
    await connectClient(nodes.b!.mqttUrl, { clientId: 'dev-17', protocolVersion: 5 })
    expect(await disconnected).toBe(0x8e) // Session taken over [MQTT-3.1.4-3]
    await closed
  })
})

describe('faults', () => {
  it('kill -9 of a node mid-traffic: the others keep flowing and the dead node\'s clients\' wills are published', async () => {
    const sub = await connectClient(nodes.c!.mqttUrl)
    await sub.client.subscribeAsync('flow/#')
    await sub.client.subscribeAsync('wills/#')
    const pub = await connectClient(nodes.a!.mqttUrl)
    await interestReady(pub, sub, 'flow/probe')
    await connectClient(nodes.b!.mqttUrl, { clientId: 'doomed', will: { topic: 'wills/doomed', payload: Buffer.from('gone'), qos: 1, retain: false } })
    // the will reached the others in a heartbeat
    await vi.waitFor(async () => expect((await cluster(nodes.a!)).nodes.find((n) => n.id === 'b')).toMatchObject({ wills: 1 }), { timeout: 5_000 })
    let i = 0
    const timer = setInterval(() => pub.client.publish('flow/x', String(i++)), 10)
    try {
      await vi.waitFor(() => expect(sub.messages.filter((m) => m.topic === 'flow/x').length).toBeGreaterThan(10))
      await nodes.b!.kill()
      const before = sub.messages.length
      await vi.waitFor(() => expect(sub.messages.some((m) => m.topic === 'wills/doomed' && m.payload === 'gone')).toBe(true), { timeout: 8_000 })
      expect(sub.messages.length).toBeGreaterThan(before + 10)
    } finally {
      clearInterval(timer)
    }
    // published once, by one survivor
    await vi.waitFor(async () => expect((await cluster(nodes.a!)).nodes).toHaveLength(2))
    expect(sub.messages.filter((m) => m.topic === 'wills/doomed')).toHaveLength(1)
  }, 20_000)

  it('kill -9 of a nats-server: the nodes on it reconnect to another and the cluster keeps routing', async () => {
    const sub = await connectClient(nodes.c!.mqttUrl)
    await sub.client.subscribeAsync('after/#')
    const pub = await connectClient(nodes.a!.mqttUrl)
    await interestReady(pub, sub, 'after/probe')
    const server = (await cluster(nodes.a!)).link.server
    const victim = nats.nodes.find((n) => server.endsWith(`:${n.port}`))!
    expect(victim).toBeDefined()
    await victim.kill()
    await vi.waitFor(async () => {
      const st = await cluster(nodes.a!)
      expect(st.link.state).toBe('connected')
      expect(st.link.server).not.toBe(server)
    }, { timeout: 8_000 })
    sub.messages.length = 0
    await vi.waitFor(() => {
      pub.client.publish('after/x', 'again')
      expect(sub.messages.some((m) => m.topic === 'after/x')).toBe(true)
    }, { timeout: 8_000, interval: 100 })
  }, 20_000)
})
