// Renders tests/jinja cases with @huggingface/jinja, the engine transformers.js
// uses for chat templates (its Template applies trim_blocks and lstrip_blocks,
// node_modules/@huggingface/jinja/src/index.ts). Input and output as
// tests/blocks/jinja_render.c: node render_ref.mjs IN.json OUT.json
import { readFileSync, writeFileSync } from "node:fs";

let Template;
try {
	({ Template } = await import("@huggingface/jinja"));
} catch (e) {
	console.error("@huggingface/jinja is not installed: run `npm ci` in tests/jinja");
	process.exit(3);
}

const [inPath, outPath] = process.argv.slice(2);
const input = JSON.parse(readFileSync(inPath, "utf8"));
const out = {};
for (const c of input.cases) {
	try {
		const t = new Template(input.templates[c.template]);
		out[c.id] = { ok: true, out: t.render(c.context) };
	} catch (e) {
		out[c.id] = { ok: false, error: String(e && e.message ? e.message : e) };
	}
}
writeFileSync(outPath, JSON.stringify(out));
