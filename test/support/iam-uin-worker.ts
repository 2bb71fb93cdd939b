/**
 * Child process for the uin-allocation test: opens an identity store on the backing given as JSON
 * in argv[2], allocates argv[3] uins of kind argv[4] (all in flight at once), prints them as JSON.
 */
import type { UinKind } from '../../src/iam/identity-store';
import { BackingSpec, openSpec } from './iam-backends';

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2]) as BackingSpec;
  const count = Number(process.argv[3]);
  const kind = process.argv[4] as UinKind;
  const store = await openSpec(spec);
  const uins = await Promise.all(Array.from({ length: count }, () => store.allocateUin(kind)));
  await store.close();
  process.stdout.write(JSON.stringify(uins));
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
