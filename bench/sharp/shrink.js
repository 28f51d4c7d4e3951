// The sharp side of bench/shrink: every file named on the command line, one after the
// other on one thread, to OUTDIR/NAME.jpg at JPEG quality 50.  Prints one JSON line:
// CPU seconds of the whole process, of its start (node and sharp loading) alone, and the
// output bytes.
'use strict';
const t0 = process.cpuUsage();
const path = require('path');
const fs = require('fs');
const sharp = require('sharp');

const seconds = (u) => (u.user + u.system) / 1e6;

async function main() {
  const [outDir, ...files] = process.argv.slice(2);
  sharp.concurrency(1);
  sharp.cache(false);
  const start = process.cpuUsage(t0);
  let bytes = 0;
  for (const file of files) {
    const out = path.join(outDir, path.basename(file, path.extname(file)) + '.jpg');
    const info = await sharp(file).jpeg({ quality: 50 }).toFile(out);
    bytes += info.size;
  }
  const total = process.cpuUsage();
  console.log(JSON.stringify({ cpu: seconds(total), start: seconds(start), bytes, files: files.length }));
}

main().catch((e) => { console.error(e.message); process.exit(1); });
