import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { LogLimiter } from '../../src/core/log-limiter.ts'
import type { Logger } from '../../src/core/log.ts'

function recorder() {
  const lines: Array<{ level: string; fields: Record<string, unknown>; msg: string }> = []
  const at = (level: string) => (fields: object | string, msg?: string) => { lines.push({ level, fields: fields as Record<string, unknown>, msg: msg ?? '' }) }
  const log: Logger = { fatal: at('fatal'), error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'), trace: at('trace') }
  return { log, lines }
}

describe('LogLimiter', () => {
  beforeEach(() => { vi.useFakeTimers() })
  afterEach(() => { vi.useRealTimers() })

  it('writes the first line of a cause at once and counts the rest of its window into one line', () => {
    const { log, lines } = recorder()
    const limiter = new LogLimiter(log, { intervalMs: 10_000, now: () => Date.now() })
    for (let i = 0; i < 7560; i++) limiter.error('EJOURNAL_FULL:t', { code: 'EJOURNAL_FULL', seq: i }, 'journal full')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ level: 'error', fields: { cause: 'EJOURNAL_FULL:t', code: 'EJOURNAL_FULL', seq: 0 } })
    expect(limiter.suppressed('EJOURNAL_FULL:t')).toBe(7559)
    vi.advanceTimersByTime(10_000)
    expect(lines).toHaveLength(2)
    expect(lines[1]?.fields).toMatchObject({ cause: 'EJOURNAL_FULL:t', seq: 7559, suppressed: 7559 })
    expect(lines[1]?.msg).toContain('7559 more')
  })

  it('keeps causes apart: one noisy cause does not hide another', () => {
    const { log, lines } = recorder()
    const limiter = new LogLimiter(log, { now: () => Date.now() })
    limiter.warn('a', {}, 'a')
    limiter.warn('a', {}, 'a')
    limiter.warn('b', {}, 'b')
    expect(lines.map((l) => l.msg)).toEqual(['a', 'b'])
  })

  it('writes a lone line again once its window has passed, and flush reports what was counted', () => {
    const { log, lines } = recorder()
    const limiter = new LogLimiter(log, { intervalMs: 1000, now: () => Date.now() })
    limiter.info('x', {}, 'x')
    vi.advanceTimersByTime(1500)
    limiter.info('x', {}, 'x')
    expect(lines).toHaveLength(2)
    limiter.info('x', { n: 2 }, 'x')
    limiter.flush()
    expect(lines).toHaveLength(3)
    expect(lines[2]?.fields).toMatchObject({ n: 2, suppressed: 1 })
    vi.advanceTimersByTime(5000)
    expect(lines).toHaveLength(3)
  })
})
