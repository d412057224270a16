// Regenerates docs/errors.md from the registry in src/core/errors.ts (test/core/errors.test.ts checks they agree).
import { readFileSync, writeFileSync } from 'node:fs'

const root = new URL('../', import.meta.url)
const src = readFileSync(new URL('src/core/errors.ts', root), 'utf8')
const doc = new URL('docs/errors.md', root)
const old = readFileSync(doc, 'utf8')
const head = old.split('\n| code | meaning |')[0]
const tail = '\nThe registry is `src/core/errors.ts`; `test/core/errors.test.ts` checks that this page lists every code (regenerate it with `node build/errors-doc.mjs`).\n'
const rows = [...src.matchAll(/^  (E[A-Z0-9_]+): '((?:[^'\\]|\\.)*)',$/gm)].map(([, code, text]) => `| \`${code}\` | ${text.replace(/\\'/g, "'")} |`)
writeFileSync(doc, `${head}\n| code | meaning |\n|---|---|\n${rows.join('\n')}\n${tail}`)
console.log(`docs/errors.md: ${rows.length} codes`)
