import fc from 'fast-check'
import { topicMatchesFilter } from '../../src/subjects/topic.ts'

/**
 * A small alphabet for brute-force checks: literals the filters use (with a '$' one and the empty
 * level), and topic levels the filters never name ('z', '$z'), which stand for "any other value".
 */
export const FILTER_LEVELS = ['a', 'b', '$s', '', '+', '#'] as const
export const TOPIC_LEVELS = ['a', 'b', '$s', '', 'z', '$z'] as const

/** A valid filter of 1..maxLevels levels over FILTER_LEVELS ('#' only last). */
export function filterArb(maxLevels = 4): fc.Arbitrary<string> {
  return fc.array(fc.constantFrom(...FILTER_LEVELS), { minLength: 1, maxLength: maxLevels }).map((parts) => {
    const i = parts.indexOf('#')
    return (i === -1 ? parts : parts.slice(0, i + 1)).join('/')
  }).filter((f) => f.length > 0)
}

/** Every topic of 1..maxLevels levels over TOPIC_LEVELS (the empty topic excluded). */
export function allTopics(maxLevels: number): string[] {
  let layer: string[][] = [[]]
  const out: string[] = []
  for (let n = 1; n <= maxLevels; n++) {
    layer = layer.flatMap((prefix) => TOPIC_LEVELS.map((l) => [...prefix, l]))
    for (const levels of layer) {
      const t = levels.join('/')
      if (t.length > 0) out.push(t)
    }
  }
  return out
}

export const TOPICS_5 = allTopics(5)

export function matching(filter: string, topics: readonly string[] = TOPICS_5): string[] {
  return topics.filter((t) => topicMatchesFilter(t, filter))
}
