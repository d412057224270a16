import { describe, expect, it } from 'vitest'
import { Router } from '../../src/router/router.ts'
import { SubjectRates } from '../../src/router/subject-rates.ts'

const emit = (r: Router, topic: string, times: number) => {
  for (let i = 0; i < times; i++) r.emit({ cmd: 'publish', topic, payload: Buffer.alloc(0), qos: 0, retain: false } as never)
}

describe('SubjectRates', () => {
  it('ranks subjects by messages per second, counted on the route cache, with no subscriber needed', () => {
    const r = new Router()
    const rates = new SubjectRates(r)
    emit(r, 'a/busy', 50)
    emit(r, 'a/quiet', 2)
    rates.sample()
    expect(rates.top(10)).toEqual([{ subject: 'a/busy', rate: 50 }, { subject: 'a/quiet', rate: 2 }])
    expect(rates.top(1)).toEqual([{ subject: 'a/busy', rate: 50 }])
  })

  it('keeps counting a busy subject across a subscription change (the route cache is dropped)', () => {
    const r = new Router()
    const rates = new SubjectRates(r)
    emit(r, 'x', 10)
    rates.sample()
    emit(r, 'x', 10) // counted on the plan that is about to leave the cache
    r.on('other/#', () => {})
    rates.sample()
    expect(rates.top(1)[0]).toEqual({ subject: 'x', rate: 10 })
  })

  it('decays a subject that went quiet and drops it at last', () => {
    const r = new Router()
    const rates = new SubjectRates(r)
    emit(r, 'once', 10)
    rates.sample()
    rates.sample()
    expect(rates.top(1)[0]?.rate).toBe(9)
    for (let i = 0; i < 100; i++) rates.sample()
    expect(rates.top(5)).toEqual([])
    expect(rates.tracked).toBe(0)
  })
})
