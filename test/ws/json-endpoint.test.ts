import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'

let srv: StartedEdgebus
beforeAll(async () => { srv = await startEdgebus({ config: { streams: [{ name: 'ui', subjects: ['ui.>'], maxMsgs: 1, discard: 'new' }, { name: 'log', subjects: ['log.>'], consumers: [{ name: 'w', ackWait: '10s' }] }] } }) })
afterAll(async () => {
  await endAllClients()
  await srv.stop()
})

/** A /ws client that records every frame and answers requests by id. */
async function jsonClient() {
  const ws = new WebSocket(`ws://127.0.0.1:${srv.httpPort}/ws`)
  const frames: Array<Record<string, unknown>> = []
  const waiters: Array<() => void> = []
  ws.on('message', (d) => { frames.push(JSON.parse(String(d)) as Record<string, unknown>); for (const w of waiters) w() })
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  const waitFor = (pred: (f: Record<string, unknown>) => boolean, ms = 5000) => new Promise<Record<string, unknown>>((resolve, reject) => {
    const check = (): void => { const f = frames.find(pred); if (f) { clearTimeout(t); resolve(f) } }
    const t = setTimeout(() => reject(new Error(`no such frame; got ${JSON.stringify(frames)}`)), ms)
    waiters.push(check)
    check()
  })
  let n = 0
  const request = (req: Record<string, unknown>) => {
    const id = String(++n)
    ws.send(JSON.stringify({ ...req, id }))
    return waitFor((f) => f.id === id)
  }
  return { ws, frames, waitFor, request }
}

describe('JSON over WebSocket (/ws)', () => {
  it('a NATS-style subscription receives an MQTT publish; a /ws publish reaches MQTT', async () => {
    const c = await jsonClient()
    expect(await c.request({ op: 'hello' })).toMatchObject({ op: 'hello', server: 'edgebus' })
    const ok = await c.request({ op: 'sub', filter: 'farm.*.temp' })
    expect(ok).toMatchObject({ op: 'ok', filter: 'farm.*.temp' })
    const mqtt = await connectClient(srv.mqttUrl)
    await mqtt.client.subscribeAsync('ui/#')
    await mqtt.client.publishAsync('farm/barn/temp', '21.5')
    expect(await c.waitFor((f) => f.op === 'msg')).toEqual({ op: 'msg', sub: ok.sub, subject: 'farm.barn.temp', payload: '21.5', retain: false, qos: 0 })
    expect(await c.request({ op: 'pub', subject: 'ui.button', payload: 'pressed' })).toEqual({ op: 'ok', id: expect.any(String), stored: [{ stream: 'ui', seq: 1 }] })
    expect((await mqtt.waitFor(1))[0]).toMatchObject({ topic: 'ui/button', payload: 'pressed' })
    // the stream is full (maxMsgs 1, discard new): the answer says so
    expect(await c.request({ op: 'pub', subject: 'ui.button', payload: 'again' })).toMatchObject({ op: 'error', code: 'ESTREAM_LIMIT' })
    expect(await c.request({ op: 'unsub', sub: ok.sub })).toMatchObject({ op: 'ok' })
    expect(await c.request({ op: 'ping' })).toMatchObject({ op: 'pong' })
    c.ws.close()
  })

  it('workers share a durable consumer over /ws: next and ack; a closed connection\'s messages go to the others', async () => {
    const made = await fetch(`${srv.httpUrl}/api/streams/ui/consumers`, { method: 'POST', body: JSON.stringify({ name: 'ws-workers', deliver: 'all' }) })
    expect(made.status).toBe(201)
    const a = await jsonClient()
    const b = await jsonClient()
    type Msgs = { messages: Array<{ seq: number; payload: string; deliveryCount: number }> }
    const first = await a.request({ op: 'next', stream: 'ui', consumer: 'ws-workers', batch: 10, wait: 1000 }) as unknown as Msgs
    expect(first.messages.map((m) => [m.seq, m.payload])).toEqual([[1, 'pressed']]) // the one message the earlier test stored
    expect((await b.request({ op: 'next', stream: 'ui', consumer: 'ws-workers', batch: 10 }) as unknown as Msgs).messages).toEqual([]) // a holds it
    a.ws.close() // a goes away without acking: b gets it, as a redelivery
    await new Promise((r) => setTimeout(r, 200))
    const again = await b.request({ op: 'next', stream: 'ui', consumer: 'ws-workers', batch: 10, wait: 1000 }) as unknown as Msgs
    expect(again.messages.map((m) => [m.seq, m.deliveryCount])).toEqual([[1, 2]])
    expect(await b.request({ op: 'ack', stream: 'ui', consumer: 'ws-workers', ack: [1] })).toMatchObject({ op: 'ok', acked: 1 })
    expect(await b.request({ op: 'next', stream: 'ui', consumer: 'nope' })).toMatchObject({ op: 'error', code: 'ECONSUMER_NOT_FOUND' })
    b.ws.close()
  })

  it('replays a stream from a position, filtered, then live; unsub ends it', async () => {
    const mqtt = await connectClient(srv.mqttUrl)
    for (let i = 1; i <= 6; i++) await mqtt.client.publishAsync(i % 2 ? 'log/a' : 'log/b', `line ${i}`, { qos: 1 })
    const c = await jsonClient()
    const ok = await c.request({ op: 'replay', stream: 'log', start: 'seq=2', filter: 'log.a' })
    expect(ok).toMatchObject({ op: 'ok', sub: expect.any(String) })
    const msgs = () => c.frames.filter((f) => f.op === 'msg' && f.sub === ok.sub)
    await c.waitFor(() => msgs().length >= 2)
    expect(msgs().map((m) => [m.seq, m.subject, m.payload])).toEqual([[3, 'log.a', 'line 3'], [5, 'log.a', 'line 5']])
    expect(Date.parse(String(msgs()[0]?.time))).toBeGreaterThan(Date.now() - 60_000)
    await mqtt.client.publishAsync('log/a', 'line 7', { qos: 1 })
    await c.waitFor(() => msgs().length >= 3)
    expect(msgs()[2]).toMatchObject({ seq: 7, payload: 'line 7' })
    expect(await c.request({ op: 'unsub', sub: ok.sub })).toMatchObject({ op: 'ok' })
    await mqtt.client.publishAsync('log/a', 'line 8', { qos: 1 })
    await new Promise((r) => setTimeout(r, 200))
    expect(msgs().length).toBe(3)
    expect(await c.request({ op: 'replay', stream: 'log', start: 'yesterday' })).toMatchObject({ op: 'error', code: 'EWS_FIELD' })
    expect(await c.request({ op: 'replay', stream: 'nope' })).toMatchObject({ op: 'error', code: 'ESTREAM_NOT_FOUND' })
    c.ws.close()
  })

  it('replays from last-per-subject: the newest message of each subject, then live', async () => {
    const mqtt = await connectClient(srv.mqttUrl)
    await mqtt.client.publishAsync('log/lps/x', 'x old', { qos: 1 })
    await mqtt.client.publishAsync('log/lps/y', 'y only', { qos: 1 })
    await mqtt.client.publishAsync('log/lps/x', 'x new', { qos: 1 })
    const c = await jsonClient()
    const ok = await c.request({ op: 'replay', stream: 'log', start: 'last-per-subject', filter: 'log.lps.*' })
    expect(ok).toMatchObject({ op: 'ok' })
    const msgs = () => c.frames.filter((f) => f.op === 'msg' && f.sub === ok.sub).map((m) => [m.subject, m.payload])
    await c.waitFor(() => msgs().length >= 2)
    expect(msgs()).toEqual([['log.lps.y', 'y only'], ['log.lps.x', 'x new']])
    await mqtt.client.publishAsync('log/lps/y', 'y live', { qos: 1 })
    await c.waitFor(() => msgs().length >= 3)
    expect(msgs()[2]).toEqual(['log.lps.y', 'y live'])
    c.ws.close()
  })

  it('nak with a delay: the message comes again only after it', async () => {
    const c = await jsonClient()
    type Msgs = { messages: Array<{ seq: number; deliveryCount: number }> }
    const first = await c.request({ op: 'next', stream: 'log', consumer: 'w', batch: 1, wait: 1000 }) as unknown as Msgs
    const seq = first.messages[0]?.seq as number
    expect(await c.request({ op: 'ack', stream: 'log', consumer: 'w', nak: [seq], nakDelay: '400ms' })).toMatchObject({ naked: 1 })
    const t0 = Date.now()
    let again: Msgs['messages'] = []
    while (!again.some((m) => m.seq === seq) && Date.now() - t0 < 3000) {
      again = (await c.request({ op: 'next', stream: 'log', consumer: 'w', batch: 100, wait: 100 }) as unknown as Msgs).messages
      if (!again.some((m) => m.seq === seq)) await c.request({ op: 'ack', stream: 'log', consumer: 'w', ack: again.map((m) => m.seq) })
    }
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350)
    expect(again.find((m) => m.seq === seq)?.deliveryCount).toBe(2)
    expect(await c.request({ op: 'ack', stream: 'log', consumer: 'w', nakDelay: 'soon' })).toMatchObject({ op: 'error', code: 'EWS_FIELD' })
    c.ws.close()
  })

  it('malformed frames get error codes and the connection stays up', async () => {
    const c = await jsonClient()
    c.ws.send('{oops')
    expect(await c.waitFor((f) => f.code === 'EWS_JSON')).toMatchObject({ op: 'error' })
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true })
    await c.waitFor((f) => f.code === 'EWS_FRAME')
    expect(await c.request({ op: 'sub', filter: 'a.>.b' })).toMatchObject({ code: 'ESUBJECT_INVALID' })
    expect(await c.request({ op: 'unsub', sub: '999' })).toMatchObject({ code: 'EWS_NO_SUB' })
    expect(await c.request({ op: 'dance' })).toMatchObject({ code: 'EWS_OP' })
    expect(await c.request({ op: 'ping' })).toMatchObject({ op: 'pong' }) // still up
    c.ws.close()
  })
})
