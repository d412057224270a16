import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../../src/core/log.ts'

function capture(level: Parameters<typeof createLogger>[0]) {
  const out = new PassThrough()
  const lines: Array<Record<string, unknown>> = []
  out.on('data', (d: Buffer) => { for (const l of d.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>) })
  return { log: createLogger(level, out), lines }
}

describe('createLogger', () => {
  it('writes one JSON line per event in pino\'s shape, at or above its level', () => {
    const { log, lines } = capture('info')
    log.info({ port: 1883, nested: { a: [1] } }, 'edgebus ready')
    log.warn('just a message')
    log.debug({ hidden: true }, 'below the level')
    log.error({ err: new Error('boom') }, 'failed')
    expect(lines).toHaveLength(3)
    expect(lines[0]).toEqual({ level: 30, time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), name: 'edgebus', port: 1883, nested: { a: [1] }, msg: 'edgebus ready' })
    expect(lines[1]).toMatchObject({ level: 40, msg: 'just a message' })
    expect(lines[2]).toMatchObject({ level: 50, err: { type: 'Error', message: 'boom', stack: expect.stringContaining('boom') }, msg: 'failed' })
  })

  it('survives what JSON cannot say, and says nothing when silent', () => {
    const { log, lines } = capture('trace')
    const loop: Record<string, unknown> = {}
    loop.self = loop
    log.trace(loop, 'circular')
    expect(lines[0]).toMatchObject({ level: 10, fields: '(not serialisable)', msg: 'circular' })
    const silent = capture('silent')
    silent.log.fatal('nothing')
    expect(silent.lines).toEqual([])
  })
})
