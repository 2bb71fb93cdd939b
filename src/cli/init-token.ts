/**
 * `node dist/src/cli/init-token.js [--profile NAME] LABEL` (run by softhsm/make-tokens.sh and
 * softhsm/opencryptoki-token.sh): initialises one free token of the profile's library (default
 * softhsm2, $SOFTHSM2_CONF) through PKCS#11. The SO PIN and the user PIN are read from stdin, one a
 * line, never from arguments or the environment: no PIN is on any command line.
 */
import { existsSync, readFileSync } from 'node:fs';
import { openModule } from '../hsm/module';
import { loadProfiles, PROFILE_DIR } from '../hsm/profile';
import { initToken } from '../hsm/provision';

/** Published factory SO PINs: C_InitToken must be given the current one, which is then replaced. */
const FACTORY_SO_PIN: Record<string, string> = { 'opencryptoki-swtok': '87654321' };

function library(profileName: string): string {
  const profile = loadProfiles(PROFILE_DIR).get(profileName);
  if (!profile) throw new Error(`no HSM profile named ${profileName}`);
  const found = profile.moduleHints.find((p) => existsSync(p));
  if (!found) throw new Error(`the ${profileName} library was not found (looked at ${profile.moduleHints.join(', ')})`);
  return found;
}

function main(): void {
  const args = process.argv.slice(2);
  const profile = args[0] === '--profile' ? (args.splice(0, 2)[1] ?? '') : 'softhsm2';
  const label = args[0];
  const [soPin, userPin] = readFileSync(0, 'utf8').split('\n');
  if (!label || !soPin || !userPin) throw new Error('usage: init-token [--profile NAME] LABEL, with the SO PIN and the user PIN on stdin, one a line');
  const module = openModule({ path: library(profile) });
  module.initialize();
  try {
    initToken(module, { label, soPin, userPin, currentSoPin: FACTORY_SO_PIN[profile] });
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
