/**
 * Relations between two MQTT topic filters (canonical syntax, already validated), decided from
 * their levels alone: no topic is enumerated. The ACL uses them to answer a SUBSCRIBE cheaply when
 * one rule decides the whole filter; test/auth/filter-relation.test.ts checks both against a
 * brute-force enumeration of topics.
 *
 * Matching follows src/subjects/topic.ts (topicMatchesFilter): '+' is one level, '#' the parent
 * level and everything below it [MQTT-4.7.1-2], and a filter whose first level is a wildcard does
 * not match a topic whose first level starts with '$' [MQTT-4.7.2-1].
 */

function isWild(level: string | undefined): boolean {
  return level === '+' || level === '#'
}

/** The first level of the filter is a literal starting with '$': every topic it matches is a '$' topic. */
function dollarLiteral(first: string | undefined): boolean {
  return first !== undefined && !isWild(first) && first.startsWith('$')
}

/**
 * The filter as pieces whose level-by-level reading is exact. '#' at the end also matches the parent
 * level ('a/#' matches 'a' [MQTT-4.7.1-2]), except where that parent would be the empty topic, which
 * is not a topic [MQTT-4.7.3-1]: '#' and '+/#' are really '+' plus '+/+/#', and '/#' is '/+/#'.
 * (The pieces still let '+' match the empty topic; no answer depends on it, the tests show.)
 */
function pieces(f: readonly string[]): ReadonlyArray<readonly string[]> {
  if (f.length === 1 && f[0] === '#') return ANY
  if (f.length === 2 && f[1] === '#') {
    if (f[0] === '+') return ANY
    if (f[0] === '') return EMPTY_FIRST
  }
  return [f]
}
const ANY = [['+'], ['+', '+', '#']] as const
const EMPTY_FIRST = [['', '+', '#']] as const

/** Every topic matched by `inner` is matched by `outer`. */
export function covers(outer: string, inner: string): boolean {
  return coversLevels(outer.split('/'), inner.split('/'))
}

export function coversLevels(a: readonly string[], b: readonly string[]): boolean {
  return pieces(b).every((piece) => coversPiece(a, piece))
}

function coversPiece(a: readonly string[], b: readonly string[]): boolean {
  // [MQTT-4.7.2-1] a leading wildcard in `a` misses every '$' topic, and all of b's topics are '$' topics
  if (isWild(a[0]) && dollarLiteral(b[0])) return false
  for (let i = 0; ; i++) {
    const x = a[i]
    const y = b[i]
    if (x === '#') return true // the rest of any topic of b, including b's parent-level match
    if (x === undefined || y === undefined) return x === y // b longer: a misses them; a longer: a misses b's topics of this length
    if (y === '#') return false // b matches topics that end here or go on; a, without '#', cannot match both
    if (x === '+') continue
    if (y === '+' || x !== y) return false // a literal level misses all but one value of b's level
  }
}

/** Some topic is matched by both filters. */
export function overlaps(a: string, b: string): boolean {
  return overlapsLevels(a.split('/'), b.split('/'))
}

export function overlapsLevels(a: readonly string[], b: readonly string[]): boolean {
  const pb = pieces(b)
  return pieces(a).some((x) => pb.some((y) => overlapsPiece(x, y)))
}

function overlapsPiece(a: readonly string[], b: readonly string[]): boolean {
  // [MQTT-4.7.2-1] the only topics a '$' literal matches are the ones a leading wildcard misses
  if ((isWild(a[0]) && dollarLiteral(b[0])) || (isWild(b[0]) && dollarLiteral(a[0]))) return false
  for (let i = 0; ; i++) {
    const x = a[i]
    const y = b[i]
    // '#' takes any continuation, and the parent level when the other filter ends here
    if (x === '#' || y === '#') return true
    if (x === undefined || y === undefined) return x === y
    if (x !== '+' && y !== '+' && x !== y) return false
  }
}
