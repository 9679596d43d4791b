'use strict';
// The fast paths of a fresh server and the repository's own hygiene:
// nothing built is committed (every helper program is built from source),
// and tools/list answered from the definitions produced at build time is
// byte for byte what the server builds at run time, while user overrides
// and tool files still change it.
const { test, describe } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { SUPPORTED, MODERN, newEnv, modernMeta } = require('./lib');

const ROOT = path.resolve(__dirname, '../..');

describe('repository', () => {
  test('no build product is committed: every program is built from its source', () => {
    const ls = spawnSync('git', ['-C', ROOT, 'ls-files', '-z'], { encoding: 'utf8' });
    assert.strictEqual(ls.status, 0, `git ls-files failed: ${ls.stderr}`);
    const files = ls.stdout.split('\0').filter(Boolean);
    assert.ok(files.length > 50, `only ${files.length} files listed`);
    const built = [];
    for (const f of files) {
      let fd;
      try { fd = fs.openSync(path.join(ROOT, f), 'r'); } catch { continue; }
      const head = Buffer.alloc(4);
      const n = fs.readSync(fd, head, 0, 4, 0);
      fs.closeSync(fd);
      if (n === 4 && head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) built.push(f);
    }
    assert.deepStrictEqual(built, [], 'committed ELF binaries');
  });
});
