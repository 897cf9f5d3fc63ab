// tok_ref.mjs - the reference side of the text tokenizer tests: encode and
// decode a corpus with transformers.js (PreTrainedTokenizer over the same
// tokenizer.json / tokenizer_config.json that vtok loads).
//
//   node tok_ref.mjs TOKENIZER_DIR CORPUS.json > ref.json
//
// Output: one JSON list, per corpus string {"ids", "ids_plain", "text",
// "text_skip"} exactly as tests/blocks/tok_dump.c prints them (ids with and
// without special tokens; decode of "ids" without and with
// skip_special_tokens).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PreTrainedTokenizer } from "@huggingface/transformers";

const [dir, corpusPath] = process.argv.slice(2);
if (!dir || !corpusPath) {
  console.error("usage: node tok_ref.mjs TOKENIZER_DIR CORPUS.json");
  process.exit(2);
}
const tokJSON = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
let tokConfig = {};
try {
  tokConfig = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
} catch (e) {
  if (e.code !== "ENOENT") throw e;
}
const tok = new PreTrainedTokenizer(tokJSON, tokConfig);
const corpus = JSON.parse(readFileSync(corpusPath, "utf8"));
const dec = (ids, skip) => (ids.length ? tok.decode(ids, { skip_special_tokens: skip }) : "");
const out = corpus.map((s) => {
  const ids = tok.encode(s, { add_special_tokens: true });
  const ids_plain = tok.encode(s, { add_special_tokens: false });
  return { ids, ids_plain, text: dec(ids, false), text_skip: dec(ids, true) };
});
process.stdout.write(JSON.stringify(out) + "\n");
