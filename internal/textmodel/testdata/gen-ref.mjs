// Reference token ids from Hugging Face's own tokenizer (the Rust library,
// through its npm binding) for the test sentences, with tokenizer.json's
// settings (truncation 128, fixed padding 128) and with truncation at 16 and
// no padding (a spec override). Regenerate with:
//   npm install tokenizers@0.23.2 && node gen-ref.mjs > reference.json
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
const require = createRequire(import.meta.url)
const { Tokenizer } = require('tokenizers')

const here = new URL('.', import.meta.url).pathname
const sentences = JSON.parse(readFileSync(here + 'sentences.json', 'utf8'))
const tok = Tokenizer.fromFile(here + '../bertgen/tokenizer.json')
const short = Tokenizer.fromFile(here + '../bertgen/tokenizer.json')
short.setTruncation(16)
short.disablePadding()
const out = []
for (const text of sentences) {
  const e = await tok.encode(text)
  const s = await short.encode(text)
  out.push({
    text,
    ids: e.getIds(),
    attention_mask: e.getAttentionMask(),
    type_ids: e.getTypeIds(),
    ids_trunc16: s.getIds(),
  })
}
console.log(JSON.stringify({ generator: 'tokenizers@0.23.2', cases: out }))
