// tok_ref_rust.mjs - the second reference of the text tokenizer tests: the
// Hugging Face `tokenizers` library itself (Rust, through its Node binding,
// npm package "tokenizers") on the same tokenizer.json, plus what
// transformers' PreTrainedTokenizerFast.decode adds on top: the
// clean_up_tokenization step when tokenizer_config.json asks for it
// (transformers tokenization_utils_base.py; default true as transformers.js).
//
//   node tok_ref_rust.mjs TOKENIZER_DIR CORPUS.json > ref.json
//
// Output: as tok_ref.mjs.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "tokenizers";

const [dir, corpusPath] = process.argv.slice(2);
if (!dir || !corpusPath) {
  console.error("usage: node tok_ref_rust.mjs TOKENIZER_DIR CORPUS.json");
  process.exit(2);
}
let config = {};
try {
  config = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
} catch (e) {
  if (e.code !== "ENOENT") throw e;
}
const cleanup = config.clean_up_tokenization_spaces ?? true;
const clean = (s) =>
  s.replaceAll(" .", ".").replaceAll(" ?", "?").replaceAll(" !", "!").replaceAll(" ,", ",")
    .replaceAll(" ' ", "'").replaceAll(" n't", "n't").replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s").replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
const tok = Tokenizer.fromFile(join(dir, "tokenizer.json"));
const corpus = JSON.parse(readFileSync(corpusPath, "utf8"));
const dec = async (ids, skip) => {
  const s = await tok.decode(ids, skip);
  return cleanup ? clean(s) : s;
};
const out = [];
for (const s of corpus) {
  const ids = Array.from((await tok.encode(s, null, { addSpecialTokens: true })).getIds());
  const ids_plain = Array.from((await tok.encode(s, null, { addSpecialTokens: false })).getIds());
  out.push({ ids, ids_plain, text: await dec(ids, false), text_skip: await dec(ids, true) });
}
process.stdout.write(JSON.stringify(out) + "\n");
