/**
 * `npm run fuzz -- --minutes N` and `npm run fuzz:codec -- --seconds S`: long fuzz runs. The code is
 * test/fuzz/cli.ts (typechecked with the tests); its header says what each run does.
 */
import '../test/fuzz/cli.js';
