/**
 * Child process for the crash-consistency test: runs CreateKey, RotateKey, import and Encrypt in a
 * loop against the given tokens and SQLite file, printing one line per acknowledged operation
 * (written synchronously, so a line exists only if the operation returned). The parent kills it
 * with SIGKILL at a random moment.
 */
import { constants, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { HsmCluster } from '../../src/hsm/cluster';
import { HsmMember } from '../../src/hsm/member';
import { loadProfiles } from '../../src/hsm/profile';
import { Kms } from '../../src/kms/service';
import { SqliteMetadataStore } from '../../src/store/sqlite/store';

export interface CrashSpec {
  sqlite: string;
  deploymentId: string;
  clusters: Array<{
    id: string;
    kind: 'shared' | 'dedicated';
    owners: string[];
    members: Array<{ id: string; lib: string; conf: string; label: string; pin: string }>;
  }>;
}

const ack = (line: string) => writeSync(1, line + '\n');

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(process.argv[2], 'utf8')) as CrashSpec;
  const profiles = loadProfiles(join(__dirname, '..', '..', '..', 'hsm-profiles'));
  const clusters = spec.clusters.map(
    (c) =>
      new HsmCluster({
        id: c.id,
        kind: c.kind,
        owners: c.owners,
        members: c.members.map(
          (m) =>
            new HsmMember({
              id: m.id,
              profile: profiles.get('softhsm2')!,
              module: { path: m.lib, env: { SOFTHSM2_CONF: m.conf } },
              tokenLabel: m.label,
              pin: m.pin,
            }),
        ),
      }),
  );
  for (const c of clusters) c.start();
  const kms = new Kms({ store: new SqliteMetadataStore(spec.sqlite), clusters, deploymentId: Buffer.from(spec.deploymentId, 'hex'), maxKeysPerRegion: 0 });
  const caller = { tenant: '7001', uin: '7001', region: 'ap-guangzhou' };
  const made: string[] = [];
  ack('ready');
  for (let i = 0; ; i++) {
    const step = i % 4;
    if (step === 0 || made.length === 0) {
      const k = await kms.lifecycle.createKey(caller, { alias: `crash-${process.pid}-${i}` });
      made.push(k.keyId);
      ack(`created ${k.keyId}`);
    } else if (step === 1) {
      const id = made[Math.floor(Math.random() * made.length)];
      await kms.rotation.rotateKey(caller, id);
      const r = await kms.store.getKey(caller.tenant, id);
      ack(`rotated ${id} ${r!.versions[r!.versions.length - 1].version}`);
    } else if (step === 2) {
      const k = await kms.lifecycle.createKey(caller, { alias: `crash-import-${process.pid}-${i}`, origin: 'EXTERNAL' });
      const p = await kms.keyImport.getParametersForImport(caller, { keyId: k.keyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
      const key = createPublicKey({ key: p.publicKey, format: 'der', type: 'spki' });
      const wrapped = publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, randomBytes(32));
      await kms.keyImport.importKeyMaterial(caller, { keyId: k.keyId, importToken: p.importToken, encryptedKeyMaterial: wrapped });
      ack(`imported ${k.keyId}`);
    } else {
      const id = made[Math.floor(Math.random() * made.length)];
      const plaintext = `crash data ${i}`;
      const { ciphertext } = await kms.envelope.encrypt(caller, { keyId: id, plaintext: Buffer.from(plaintext) });
      ack(`blob ${id} ${ciphertext.toString('base64')} ${plaintext}`);
    }
  }
}

main().catch((e: Error) => {
  writeSync(2, `crash worker failed: ${e.message}\n`);
  process.exit(3);
});
