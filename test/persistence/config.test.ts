import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.ts'

describe('persistence and session keys', () => {
  it('default to on, 1000 queued messages and 7 days', () => {
    const { config } = loadConfig({ env: {}, cwd: '/nonexistent' })
    expect(config.persistence).toEqual({ enabled: true })
    expect(config.sessions).toEqual({ maxQueuedMessages: 1000, expiry: 7 * 24 * 3600 * 1000 })
  })

  it('read from the environment and flags', () => {
    const { config } = loadConfig({
      env: { EDGEBUS_PERSISTENCE_ENABLED: 'false', EDGEBUS_SESSIONS_EXPIRY: '90m' },
      flags: { 'sessions.maxQueuedMessages': '50' },
      cwd: '/nonexistent',
    })
    expect(config.persistence.enabled).toBe(false)
    expect(config.sessions).toEqual({ maxQueuedMessages: 50, expiry: 90 * 60 * 1000 })
  })

  it('refuse what is not a boolean', () => {
    expect(() => loadConfig({ env: { EDGEBUS_PERSISTENCE_ENABLED: 'maybe' }, cwd: '/nonexistent' })).toThrow(/use true or false/)
  })
})
