import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'

let srv: StartedEdgebus
beforeAll(async () => {
  srv = await startEdgebus({ config: { streams: [{ name: 'events', subjects: ['events.>'] }, { name: 'capped', subjects: ['capped/#'], maxMsgs: 1, discard: 'new' }] } })
})
afterAll(async () => {
  await endAllClients()
  await srv.stop()
})

const publish = (subject: string, body: string | Buffer, headers: Record<string, string> = {}, query = '') =>
  fetch(`${srv.httpUrl}/api/publish/${subject}${query}`, { method: 'POST', body, headers })

async function lines(path: string): Promise<Array<Record<string, unknown>>> {
  const res = await fetch(srv.httpUrl + path)
  expect(res.headers.get('content-type')).toBe('application/x-ndjson')
  return (await res.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
}

describe('HTTP publish', () => {
  it('publishes to MQTT subscribers, and answers with each stream\'s sequence once stored', async () => {
    const sub = await connectClient(srv.mqttUrl, { protocolVersion: 5 })
    await sub.client.subscribeAsync('events/#', { qos: 1 })
    const res = await publish('events.door.open', '{"door":1}', { 'content-type': 'application/json', 'msg-id': 'evt-1' })
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ subject: 'events/door/open', stored: [{ stream: 'events', seq: 1, duplicate: false }] })
    const [m] = await sub.waitFor(1)
    expect(m).toMatchObject({ topic: 'events/door/open', payload: '{"door":1}', qos: 1, properties: { contentType: 'application/json' } })
    // the same Msg-Id again: acknowledged with the original sequence, stored once
    expect(await (await publish('events.door.open', '{"door":1}', { 'msg-id': 'evt-1' })).json()).toMatchObject({ stored: [{ seq: 1, duplicate: true }] })
    // a subject no stream captures: delivered, nothing stored; MQTT syntax in the path works too
    expect(await (await publish('other/x', 'y')).json()).toEqual({ subject: 'other/x', stored: [] })
  })

  it('says when a stream refused the message, and refuses bad input with codes', async () => {
    expect((await publish('capped/a', 'one')).status).toBe(200)
    const refused = await publish('capped/a', 'two')
    expect(refused.status).toBe(507)
    expect(await refused.json()).toMatchObject({ stored: [{ stream: 'capped', error: { code: 'ESTREAM_LIMIT' } }] })
    expect(await (await publish('events.*', 'x')).json()).toMatchObject({ error: { code: 'ESUBJECT_WILDCARD' } })
    expect((await fetch(`${srv.httpUrl}/api/publish/x`, { method: 'GET' })).status).toBe(405)
    expect((await publish('big', Buffer.alloc(2 * 1024 * 1024))).status).toBe(413)
  })

  it('answers a proxy CONNECT with 405 and the methods it has, and stays up', async () => {
    const { connect } = await import('node:net')
    const answer = await new Promise<string>((resolve, reject) => {
      const s = connect(srv.httpPort, '127.0.0.1', () => s.write('CONNECT 127.0.0.1:1883 HTTP/1.1\r\nHost: 127.0.0.1:1883\r\n\r\n'))
      let text = ''
      s.on('data', (d) => { text += d.toString('latin1') })
      s.on('end', () => resolve(text))
      s.on('error', reject)
    })
    expect(answer).toMatch(/^HTTP\/1\.1 405 /)
    expect(answer).toMatch(/\r\nAllow: GET, POST, PUT, DELETE\r\n/i)
    expect((await fetch(`${srv.httpUrl}/healthz`)).status).toBe(200)
  })

  it('retains with ?retain=1', async () => {
    await publish('events.state', 'on', {}, '?retain=1')
    const late = await connectClient(srv.mqttUrl)
    await late.client.subscribeAsync('events/state')
    expect((await late.waitFor(1))[0]).toMatchObject({ payload: 'on', retain: true })
  })
})

describe('stream replay over HTTP', () => {
  beforeAll(async () => {
    for (let i = 0; i < 10; i++) await publish(`events.replay.${i % 2 === 0 ? 'even' : 'odd'}`, `r${i}`)
    await publish('events.binary', Buffer.from([0xff, 0x00, 0xfe]))
  })

  it('as NDJSON from a sequence, a time, the last N, with a filter and a limit', async () => {
    const all = await lines('/api/streams/events/messages?limit=0')
    expect(all.map((r) => r.seq)).toEqual(Array.from({ length: all.length }, (_, i) => i + 1))
    const replayed = all.filter((r) => String(r.subject).startsWith('events/replay'))
    expect(replayed.map((r) => r.payload)).toEqual(Array.from({ length: 10 }, (_, i) => `r${i}`))
    const fromSeq = replayed[3]?.seq as number
    expect((await lines(`/api/streams/events/messages?from_seq=${fromSeq}&limit=2`)).map((r) => r.payload)).toEqual(['r3', 'r4'])
    expect((await lines('/api/streams/events/messages?last=1'))[0]).toMatchObject({ subject: 'events/binary', payload_base64: '/wD+' })
    expect((await lines('/api/streams/events/messages?filter=events.replay.odd&limit=0')).map((r) => r.payload)).toEqual(['r1', 'r3', 'r5', 'r7', 'r9'])
    const t = Date.parse(String(replayed[5]?.time))
    const byTime = await lines(`/api/streams/events/messages?from_time=${new Date(t).toISOString()}&limit=1`)
    expect((byTime[0]?.seq as number) <= (replayed[5]?.seq as number)).toBe(true)
    const bad = await fetch(`${srv.httpUrl}/api/streams/events/messages?from_seq=x`)
    expect(bad.status).toBe(400)
  })

  it('with follow=1 as Server-Sent Events: history, then live messages; Last-Event-ID resumes', async () => {
    // limit=2: the server ends the event stream after two events
    const res = await fetch(`${srv.httpUrl}/api/streams/events/messages?follow=1&filter=events.live.>&limit=2`)
    expect(res.headers.get('content-type')).toBe('text/event-stream')
    const reader = res.body!.getReader()
    let text = ''
    const events = (): Array<{ id: number; data: Record<string, unknown> }> => text.split('\n\n').filter((e) => e.includes('data: ')).map((e) => ({
      id: Number(/id: (\d+)/.exec(e)?.[1]),
      data: JSON.parse(e.slice(e.indexOf('data: ') + 6)) as Record<string, unknown>,
    }))
    const until = async (n: number): Promise<void> => {
      while (events().length < n) {
        const { value, done } = await reader.read()
        if (done) throw new Error('stream ended')
        text += new TextDecoder().decode(value)
      }
    }
    await publish('events.live.a', 'live 1')
    await until(1)
    const mqtt = await connectClient(srv.mqttUrl)
    await mqtt.client.publishAsync('events/live/b', 'live 2', { qos: 1 })
    await until(2)
    expect(events().map((e) => e.data.payload)).toEqual(['live 1', 'live 2'])
    await reader.cancel()
    // a reconnecting EventSource sends Last-Event-ID: it gets only what came after
    await publish('events.live.c', 'live 3')
    const resume = await fetch(`${srv.httpUrl}/api/streams/events/messages?follow=1&filter=events.live.>&limit=1`, { headers: { 'last-event-id': String(events()[1]?.id) } })
    expect(await resume.text()).toContain('"payload":"live 3"')
  })

  it('a long replay to a slow reader waits for the socket each time without piling up listeners, and loses no line', async () => {
    const mqtt = await connectClient(srv.mqttUrl)
    const body = 'x'.repeat(4000)
    const n = 3000 // about 12 MB of NDJSON: dozens of waits for 'drain'
    await Promise.all(Array.from({ length: n }, (_, i) => mqtt.client.publishAsync('events/bulk', `${i} ${body}`, { qos: 1 })))
    const { get } = await import('node:http')
    const got = await new Promise<string[]>((resolve, reject) => {
      get(`${srv.httpUrl}/api/streams/events/messages?filter=events.bulk&limit=0`, (res) => {
        const seen: string[] = []
        let rest = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          rest += chunk
          let i: number
          while ((i = rest.indexOf('\n')) !== -1) {
            seen.push((JSON.parse(rest.slice(0, i)) as { payload: string }).payload.split(' ')[0] as string)
            rest = rest.slice(i + 1)
          }
          // read slowly: the server's writes fill the socket and it has to wait
          res.pause()
          setTimeout(() => res.resume(), 2)
        })
        res.on('end', () => resolve(seen))
        res.on('error', reject)
      }).on('error', reject)
    })
    expect(got).toEqual(Array.from({ length: n }, (_, i) => String(i)))
    expect(srv.output.filter((l) => l.includes('MaxListenersExceededWarning'))).toEqual([])
  })
})
