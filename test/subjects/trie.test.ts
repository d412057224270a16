import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { SubjectTrie } from '../../src/subjects/trie.ts'
import { topicMatchesFilter } from '../../src/subjects/topic.ts'

const level = fc.constantFrom('a', 'b', 'c', '', '$SYS', '$x', 'deep')
const topic = fc.array(level, { minLength: 1, maxLength: 7 }).map((l) => l.join('/')).filter((t) => t.length > 0)
const filterLevel = fc.constantFrom('a', 'b', 'c', '', '$SYS', '+', '#')
const filter = fc.array(filterLevel, { minLength: 1, maxLength: 7 }).map((parts) => {
  const i = parts.indexOf('#')
  return (i === -1 ? parts : parts.slice(0, i + 1)).join('/')
}).filter((f) => f.length > 0)

function sorted(xs: number[]): number[] {
  return [...xs].sort((a, b) => a - b)
}

describe('SubjectTrie', () => {
  it('agrees with the reference matcher on random filters and topics', () => {
    fc.assert(fc.property(fc.array(filter, { minLength: 1, maxLength: 30 }), fc.array(topic, { minLength: 1, maxLength: 20 }), (filters, topics) => {
      const trie = new SubjectTrie<number>()
      filters.forEach((f, i) => trie.insert(f, i))
      for (const t of topics) {
        const expected = filters.flatMap((f, i) => (topicMatchesFilter(t, f) ? [i] : []))
        expect(sorted(trie.match(t, []))).toEqual(sorted(expected))
      }
    }), { numRuns: 1500 })
  })

  it('agrees after random removals, and prunes to empty', () => {
    fc.assert(fc.property(fc.array(filter, { minLength: 1, maxLength: 20 }), fc.array(fc.boolean(), { minLength: 20, maxLength: 20 }), fc.array(topic, { maxLength: 10 }), (filters, removeMask, topics) => {
      const trie = new SubjectTrie<number>()
      filters.forEach((f, i) => trie.insert(f, i))
      const kept: number[] = []
      filters.forEach((f, i) => { if (removeMask[i]) expect(trie.remove(f, i)).toBe(true); else kept.push(i) })
      expect(trie.size).toBe(kept.length)
      for (const t of topics) {
        const expected = kept.filter((i) => topicMatchesFilter(t, filters[i] as string))
        expect(sorted(trie.match(t, []))).toEqual(sorted(expected))
      }
      kept.forEach((i) => trie.remove(filters[i] as string, i))
      expect(trie.size).toBe(0)
      expect([...trie.entries()]).toEqual([])
    }), { numRuns: 800 })
  })

  it('keeps $ topics away from leading wildcards [MQTT-4.7.2-1]', () => {
    const trie = new SubjectTrie<string>()
    for (const f of ['#', '+/broker', '$SYS/#', '$SYS/+']) trie.insert(f, f)
    expect(trie.match('$SYS/broker', []).sort()).toEqual(['$SYS/#', '$SYS/+'])
    expect(trie.match('app/broker', []).sort()).toEqual(['#', '+/broker'])
  })

  it('matches deep topics', () => {
    const trie = new SubjectTrie<string>()
    const deep = Array.from({ length: 200 }, (_, i) => `l${i}`).join('/')
    trie.insert('l0/#', 'hash')
    trie.insert(deep, 'exact')
    trie.insert(deep.replace('l100', '+'), 'plus')
    expect(trie.match(deep, []).sort()).toEqual(['exact', 'hash', 'plus'])
  })

  it('does not store a value twice under one filter, and remove reports absence', () => {
    const trie = new SubjectTrie<string>()
    trie.insert('a/+', 'x')
    trie.insert('a/+', 'x')
    expect(trie.size).toBe(1)
    expect(trie.remove('a/+', 'y')).toBe(false)
    expect(trie.remove('a/b', 'x')).toBe(false)
    expect(trie.remove('a/+', 'x')).toBe(true)
  })
})
