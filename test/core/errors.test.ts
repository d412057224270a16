import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { EdgebusError, ErrorCodes, isEdgebusError } from '../../src/core/errors.ts'
import { ROOT } from '../support/edgebus.ts'

describe('error registry', () => {
  it('docs/errors.md lists every code', () => {
    const doc = readFileSync(`${ROOT}docs/errors.md`, 'utf8')
    for (const code of Object.keys(ErrorCodes)) expect(doc, code).toContain(`\`${code}\``)
  })
  it('errors carry their code and detail', () => {
    const err = new EdgebusError('ECONFIG_INVALID', 'bad', { key: 'mqtt.port' })
    expect(isEdgebusError(err, 'ECONFIG_INVALID')).toBe(true)
    expect(isEdgebusError(err, 'EUSAGE')).toBe(false)
    expect(String(err)).toBe('ECONFIG_INVALID: bad')
    expect(err.detail).toEqual({ key: 'mqtt.port' })
  })
})
