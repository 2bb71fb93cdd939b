/**
 * `node dist/src/cli/init-token.js LABEL` (run by softhsm/make-tokens.sh): initialises one free
 * SoftHSM2 token of $SOFTHSM2_CONF through PKCS#11. The SO PIN and the user PIN are read from
 * stdin, one a line, never from arguments or the environment: no PIN is on any command line.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openModule } from '../hsm/module';
import { loadProfiles } from '../hsm/profile';
import { initToken } from '../hsm/provision';

const PROFILES_DIR = join(__dirname, '..', '..', '..', 'hsm-profiles');

function softhsmLibrary(): string {
  const hints = loadProfiles(PROFILES_DIR).get('softhsm2')?.moduleHints ?? [];
  const found = hints.find((p) => existsSync(p));
  if (!found) throw new Error(`libsofthsm2.so not found (looked at ${hints.join(', ')}): apt-get install softhsm2`);
  return found;
}

function main(): void {
  const label = process.argv[2];
  const [soPin, userPin] = readFileSync(0, 'utf8').split('\n');
  if (!label || !soPin || !userPin) throw new Error('usage: init-token LABEL, with the SO PIN and the user PIN on stdin, one a line');
  const module = openModule({ path: softhsmLibrary() });
  module.initialize();
  try {
    initToken(module, { label, soPin, userPin });
  } finally {
    module.finalize();
  }
}

try {
  main();
} catch (e) {
  process.stderr.write(`init-token: ${(e as Error).message}\n`);
  process.exit(1);
}
