'use strict';
// The exit status of the remote wrapper reaches the local side whatever
// its helper processes do: the live wrapper's stdin copier (the `cat`
// feeding claude's stdin) is told to stop by a TERM of the process group
// when claude has exited, and a TERM can be lost (one sent between the
// copier's fork and the shell resetting its inherited trap is dropped by
// the shell). Here the remote PATH has a `cat` that ignores TERM, which
// makes that loss certain: the wrapper must still exit with claude's
// status (127 when claude is missing) instead of being killed with its
// group (ssh then exits 255 and the dispatch reads as an ssh failure).
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { remoteSuite } = require('./remote_env');

let sshd;
const suiteEnv = remoteSuite((s) => { sshd = s; });
const remoteEnv = (t, agents) => suiteEnv(t, { agents, settings: '  transport: live\n' });

test('live: missing remote claude is not_found even when the stdin copier outlives the TERM', async (t) => {
  const cat = path.join(sshd.bin, 'cat');
  fs.writeFileSync(cat, "#!/bin/sh\ntrap '' TERM\nexec /bin/cat \"$@\"\n", { mode: 0o755 });
  fs.renameSync(path.join(sshd.bin, 'claude'), path.join(sshd.bin, 'claude.off'));
  t.after(() => {
    fs.renameSync(path.join(sshd.bin, 'claude.off'), path.join(sshd.bin, 'claude'));
    fs.rmSync(cat, { force: true });
  });
  const env = remoteEnv(t, { r: { host: 'buildbox', directory: sshd.project('noclaude') } });
  const r = env.run(['dispatch', 'r', 'x', '--json']);
  const v = JSON.parse(r.stdout);
  assert.strictEqual(v.error_type, 'not_found', r.stdout);
  assert.match(v.error, /Claude CLI not found on buildbox/);
  assert.match(v.error, /claude not found on the remote PATH/);
  // Nothing of the session is left once the group's KILL has come.
  const left = await sshd.leftovers(8000);
  assert.deepStrictEqual(left, [], `processes left on the remote side: ${left.join('; ')}`);
});
