// mocha's spec output, then the one closing line CI reads: "N passed, N failed, N skipped".
// With SURFACELINK_RESULTS_FILE set, each test's outcome is also written there as JSON, so
// a suite run elsewhere (inside the test VM) can be reported test by test by the host.
'use strict';
const fs = require('node:fs');
const Mocha = require('mocha');
const { EVENT_RUN_END, EVENT_TEST_PENDING, EVENT_TEST_PASS, EVENT_TEST_FAIL } = Mocha.Runner.constants;

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    let skipped = 0;
    const results = [];
    runner.on(EVENT_TEST_PENDING, (t) => {
      skipped++;
      results.push({ title: t.fullTitle(), state: 'skipped' });
    });
    runner.on(EVENT_TEST_PASS, (t) => results.push({ title: t.fullTitle(), state: 'passed', ms: t.duration }));
    runner.on(EVENT_TEST_FAIL, (t, err) =>
      results.push({
        title: t.fullTitle(),
        state: 'failed',
        error: String((err && (err.stack || err.message)) || err),
      }),
    );
    runner.once(EVENT_RUN_END, () => {
      const s = runner.stats;
      if (process.env.SURFACELINK_RESULTS_FILE)
        fs.writeFileSync(process.env.SURFACELINK_RESULTS_FILE, JSON.stringify(results, null, 1));
      process.stdout.write(`\n${s.passes} passed, ${s.failures} failed, ${skipped} skipped\n`);
    });
  }
}
module.exports = SummaryReporter;
