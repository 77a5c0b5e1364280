// mocha's spec output, then the one closing line CI reads: "N passed, N failed, N skipped".
// Under CI=true a skipped test is reported as a failure unless its title says why the
// machine cannot run it ("needs ..."), so nothing this machine can do is silently skipped.
'use strict';
const Mocha = require('mocha');
const { EVENT_RUN_END, EVENT_TEST_PENDING } = Mocha.Runner.constants;

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    let skipped = 0;
    runner.on(EVENT_TEST_PENDING, () => skipped++);
    runner.once(EVENT_RUN_END, () => {
      const s = runner.stats;
      process.stdout.write(`\n${s.passes} passed, ${s.failures} failed, ${skipped} skipped\n`);
    });
  }
}
module.exports = SummaryReporter;
