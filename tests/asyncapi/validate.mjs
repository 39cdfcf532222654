// Parses the AsyncAPI document named on the command line with AsyncAPI's own parser and its
// default ruleset (the spec's JSON Schema and its Spectral rules); prints every diagnostic as
// one JSON array, and leaves judging them to tests/unit/test_asyncapi_parser.py.
import { readFile } from "node:fs/promises";
import { DiagnosticSeverity, Parser } from "@asyncapi/parser";

const { diagnostics } = await new Parser().parse(await readFile(process.argv[2], "utf8"));
const found = diagnostics.map((diagnostic) => ({
  severity: DiagnosticSeverity[diagnostic.severity],
  code: diagnostic.code,
  message: diagnostic.message,
  path: diagnostic.path.join("/"),
}));
process.stdout.write(JSON.stringify(found));
