import { describe, expect, it } from 'vitest'
import { ConnectionGate } from '../../src/limits/connection-gate.ts'

describe('ConnectionGate', () => {
  it('bounds connections in total and per address, and releases them', () => {
    const g = new ConnectionGate({ maxConnections: 3, maxConnectionsPerAddress: 2, connectRate: 0 })
    expect(g.admit('a')).toBeNull()
    expect(g.admit('a')).toBeNull()
    expect(g.admit('a')).toMatchObject({ code: 'ELIMIT_CONNECTIONS', message: expect.stringContaining('limits.maxConnectionsPerAddress') })
    expect(g.admit('b')).toBeNull()
    expect(g.admit('c')).toMatchObject({ code: 'ELIMIT_CONNECTIONS', message: expect.stringContaining('limits.maxConnections') })
    g.release('a')
    expect(g.open).toBe(2)
    expect(g.admit('c')).toBeNull()
    expect(g.refused.connections).toBe(2)
  })

  it('bounds the connect rate per address (0 = no limit)', () => {
    let now = 0
    const g = new ConnectionGate({ maxConnections: 0, maxConnectionsPerAddress: 0, connectRate: 2 }, () => now)
    expect(g.admit('a')).toBeNull()
    expect(g.admit('a')).toBeNull()
    expect(g.admit('a')).toMatchObject({ code: 'ELIMIT_CONNECT_RATE' })
    expect(g.admit('b')).toBeNull() // another address has its own budget
    now = 500 // one more token (2 per second)
    expect(g.admit('a')).toBeNull()
    expect(g.refused.connectRate).toBe(1)
    const open = new ConnectionGate({ maxConnections: 0, maxConnectionsPerAddress: 0, connectRate: 0 })
    for (let i = 0; i < 1000; i++) expect(open.admit('a')).toBeNull()
  })
})
