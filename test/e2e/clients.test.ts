import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { run, spawnLines, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients, sleep } from '../support/mqtt.ts'
import { CONNACK_OK, connectPacket, publishPacket, rawConnect } from '../support/raw.ts'

let srv: StartedEdgebus
beforeAll(async () => { srv = await startEdgebus() })
afterAll(async () => { await srv.stop() })
afterEach(async () => { await endAllClients() })

describe('real clients against the built server', () => {
  it('mosquitto_pub to mosquitto_sub over TCP, MQTT 3.1, 3.1.1 and 5', async () => {
    const sub311 = spawnLines('mosquitto_sub', ['-p', String(srv.mqttPort), '-h', '127.0.0.1', '-t', 'mosq/#', '-v', '-C', '3'])
    const sub5 = spawnLines('mosquitto_sub', ['-p', String(srv.mqttPort), '-h', '127.0.0.1', '-V', 'mqttv5', '-t', 'mosq/+', '-v', '-C', '3'])
    await sleep(300)
    expect((await run('mosquitto_pub', ['-p', String(srv.mqttPort), '-h', '127.0.0.1', '-t', 'mosq/a', '-m', 'one'])).code).toBe(0)
    expect((await run('mosquitto_pub', ['-p', String(srv.mqttPort), '-h', '127.0.0.1', '-V', 'mqttv5', '-q', '1', '-t', 'mosq/b', '-m', 'two'])).code).toBe(0)
    expect((await run('mosquitto_pub', ['-p', String(srv.mqttPort), '-h', '127.0.0.1', '-V', 'mqttv31', '-q', '2', '-t', 'mosq/c', '-m', 'three'])).code).toBe(0)
    expect(await sub311.waitFor(3)).toEqual(['mosq/a one', 'mosq/b two', 'mosq/c three'])
    expect(await sub5.waitFor(3)).toEqual(['mosq/a one', 'mosq/b two', 'mosq/c three'])
  })

  it('MQTT.js over TCP and over WebSocket see each other', async () => {
    const tcp = await connectClient(srv.mqttUrl)
    const ws = await connectClient(srv.wsUrl)
    await tcp.client.subscribeAsync('mix/from-ws')
    await ws.client.subscribeAsync('mix/from-tcp')
    await tcp.client.publishAsync('mix/from-tcp', 'hello ws')
    await ws.client.publishAsync('mix/from-ws', 'hello tcp', { qos: 1 })
    expect((await ws.waitFor(1))[0]).toMatchObject({ topic: 'mix/from-tcp', payload: 'hello ws' })
    expect((await tcp.waitFor(1))[0]).toMatchObject({ topic: 'mix/from-ws', payload: 'hello tcp' })
  })

  it('python3 paho-mqtt publishes and subscribes', async () => {
    const script = `
import sys, time
import paho.mqtt.client as mqtt
port = int(sys.argv[1])
got = []
def on_message(c, u, m): got.append((m.topic, m.payload.decode()))
try:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-sub")
except AttributeError:
    c = mqtt.Client(client_id="paho-sub")
c.on_message = on_message
c.on_subscribe = lambda *a: print("SUBSCRIBED", flush=True)
c.connect("127.0.0.1", port)
c.subscribe("paho/#", qos=1)
c.loop_start()
deadline = time.time() + 10
while len(got) < 1 and time.time() < deadline: time.sleep(0.02)
c.publish("paho/self", "from paho", qos=1).wait_for_publish(5)
deadline = time.time() + 5
while len(got) < 2 and time.time() < deadline: time.sleep(0.05)
c.loop_stop(); c.disconnect()
for t, p in got: print(t, p)
`
    const js = await connectClient(srv.mqttUrl)
    const py = spawnLines('/usr/bin/python3', ['-c', script, String(srv.mqttPort)])
    const exited = new Promise<number | null>((resolve) => py.proc.once('exit', resolve))
    // paho says when its SUBACK came (a fixed wait lost the race on a loaded machine); then it
    // publishes its own message only once it has received ours
    await py.waitFor(1, 15_000)
    expect(py.lines[0]).toBe('SUBSCRIBED')
    await js.client.publishAsync('paho/js', 'from mqtt.js', { qos: 1 })
    expect(await exited).toBe(0)
    expect(py.lines.slice(1).sort()).toEqual(['paho/js from mqtt.js', 'paho/self from paho'])
  })

  it('MQTT wildcards and NATS-style wildcards see the same messages (edgebus sub)', async () => {
    const nats = spawnLines(process.execPath, ['dist/edgebus.mjs', 'sub', 'farm.*.temp', 'farm.barn.>', '--url', srv.mqttUrl])
    const mq = await connectClient(srv.mqttUrl)
    await mq.client.subscribeAsync(['farm/+/temp', 'farm/barn/#'])
    const pub = await connectClient(srv.mqttUrl)
    // the CLI subscribes when it is up: probe until it prints, so the test does not race its start
    for (let i = 0; nats.lines.length === 0 && i < 100; i++) {
      await pub.client.publishAsync('farm/barn/probe', 'probe')
      await sleep(100)
    }
    const probes = nats.lines.length
    const before = mq.messages.length
    for (const t of ['farm/field/temp', 'farm/barn/hum', 'farm/barn/temp', 'farm/field/hum', 'farm/barn']) {
      await pub.client.publishAsync(t, t)
    }
    // 'farm/barn' matches 'farm/barn/#' ('#' includes the parent level); 'farm/field/hum' matches nothing
    const mqttSeen = (await mq.waitFor(before + 4)).slice(before).map((m) => m.topic).sort()
    expect(mqttSeen).toEqual(['farm/barn', 'farm/barn/hum', 'farm/barn/temp', 'farm/field/temp'])
    const natsSeen = (await nats.waitFor(probes + 4)).slice(-4).map((l) => l.split(' ')[0]).sort()
    expect(natsSeen.filter((s) => s !== 'farm.barn.probe')).toEqual(['farm.barn', 'farm.barn.hum', 'farm.barn.temp', 'farm.field.temp'])
    nats.proc.kill()
  })

  it('retained messages reach later subscribers; an empty payload clears them', async () => {
    const messagesIn = async (): Promise<number> => ((await (await fetch(`${srv.httpUrl}/healthz`)).json()) as { messagesIn: number }).messagesIn
    const before = await messagesIn()
    const pub = await connectClient(srv.mqttUrl)
    await pub.client.publishAsync('ret/a', 'kept', { retain: true, qos: 1 })
    const late = await connectClient(srv.mqttUrl)
    await late.client.subscribeAsync('ret/#')
    const [m] = await late.waitFor(1)
    expect(m).toMatchObject({ topic: 'ret/a', payload: 'kept', retain: true })
    await pub.client.publishAsync('ret/a', '', { retain: true, qos: 1 })
    // retained publishes take aedes' path: they count as messages in all the same
    expect(await messagesIn()).toBe(before + 2)
    const later = await connectClient(srv.mqttUrl)
    await later.client.subscribeAsync('ret/#')
    await sleep(300)
    expect(later.messages).toEqual([])
  })

  it('a client that drops without DISCONNECT has its will published', async () => {
    const watcher = await connectClient(srv.mqttUrl)
    await watcher.client.subscribeAsync('wills/#')
    const dying = await connectClient(srv.mqttUrl, { will: { topic: 'wills/dev1', payload: Buffer.from('offline'), qos: 1, retain: false } })
    ;(dying.client as unknown as { stream: { destroy(): void } }).stream.destroy()
    const [m] = await watcher.waitFor(1)
    expect(m).toMatchObject({ topic: 'wills/dev1', payload: 'offline' })
  })

  it('QoS 1 and QoS 2 round trips, delivered at the lower of published and granted QoS', async () => {
    const sub2 = await connectClient(srv.mqttUrl)
    await sub2.client.subscribeAsync('q/+', { qos: 2 })
    const sub1 = await connectClient(srv.mqttUrl)
    await sub1.client.subscribeAsync('q/+', { qos: 1 }) // wildcard: aedes alone would deliver QoS 2 here
    const pub = await connectClient(srv.mqttUrl)
    await pub.client.publishAsync('q/one', 'at least once', { qos: 1 })
    await pub.client.publishAsync('q/two', 'exactly once', { qos: 2 })
    const got2 = await sub2.waitFor(2)
    expect(got2.map((m) => [m.payload, m.qos])).toEqual([['at least once', 1], ['exactly once', 2]])
    const got1 = await sub1.waitFor(2)
    expect(got1.map((m) => [m.payload, m.qos])).toEqual([['at least once', 1], ['exactly once', 1]])
  })

  it('overlapping subscriptions of one client: one copy at the highest QoS among them, also next to an exact filter; an unsubscribe lowers it again [MQTT-3.3.5-1]', async () => {
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync({ 'ov/#': { qos: 2 }, 'ov/x': { qos: 0 } })
    const pub = await connectClient(srv.mqttUrl)
    await pub.client.publishAsync('ov/x', 'both match', { qos: 2 })
    expect((await sub.waitFor(1)).map((m) => [m.payload, m.qos])).toEqual([['both match', 2]])
    await sub.client.unsubscribeAsync('ov/#')
    await pub.client.publishAsync('ov/x', 'exact only', { qos: 2 })
    const got = await sub.waitFor(2)
    expect(got.map((m) => [m.payload, m.qos])).toEqual([['both match', 2], ['exact only', 0]])
  })

  it('a persistent session gets the QoS 1 messages it missed while offline', async () => {
    const opts = { clientId: 'persistent-1', clean: false }
    const first = await connectClient(srv.mqttUrl, opts)
    await first.client.subscribeAsync('offline/#', { qos: 1 })
    await first.end()
    const pub = await connectClient(srv.mqttUrl)
    await pub.client.publishAsync('offline/x', 'while away', { qos: 1 })
    const back = await connectClient(srv.mqttUrl, opts)
    const [m] = await back.waitFor(1)
    expect(m).toMatchObject({ topic: 'offline/x', payload: 'while away', qos: 1 })
  })

  it('counts fast-path publishes as keepalive activity, and still closes silent clients', async () => {
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync('ka/x')
    // keepalive 1 s: the server closes after 1.5 s without a packet [MQTT-3.1.2-24]
    const talker = await rawConnect(srv.mqttPort)
    const silent = await rawConnect(srv.mqttPort)
    talker.socket.write(connectPacket('ka-talker', { keepalive: 1 }))
    silent.socket.write(connectPacket('ka-silent', { keepalive: 1 }))
    await talker.waitForBytes(CONNACK_OK)
    for (let i = 0; i < 8; i++) { talker.socket.write(publishPacket('ka/x', String(i))); await sleep(400) }
    await sub.waitFor(8)
    expect(talker.isClosed()).toBe(false)
    expect(silent.isClosed()).toBe(true)
    talker.socket.destroy()
  })
})
