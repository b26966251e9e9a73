// Parses each Mermaid file given as an argument with mermaid's own parser (as GitHub and GitLab
// do before drawing); prints one JSON line per file: {file, ok, type | error}.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
for (const file of process.argv.slice(2)) {
  try {
    const result = await mermaid.parse(readFileSync(file, "utf8"));
    console.log(JSON.stringify({ file, ok: true, type: result.diagramType }));
  } catch (err) {
    console.log(JSON.stringify({ file, ok: false, error: String(err.message || err).slice(0, 300) }));
  }
}
