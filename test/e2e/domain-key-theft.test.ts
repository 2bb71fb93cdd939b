/**
 * Issue 12 §1, the attack as the issue tells it, on a development installation (`kmsctl init --dev`,
 * what `make run` serves): an attacker holding the data directory (and so the user PINs) logs into
 * every token and tries to take key material out in clear — wrap each secret key under a key of
 * their own, read CKA_VALUE, or unwrap a CMK record from kms.db with the domain KEK into an object
 * they can read, or wrap under a key of theirs. Every one of them is refused on every member (the
 * KEK's CKA_UNWRAP_TEMPLATE, docs/security.md §10).
 */
import * as pk from 'pkcs11js';
import Database from 'better-sqlite3';
import { copyFileSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { WrappedMaterial } from '../../src/hsm/material';
import { allSecretKeys, attackerUnwrapTemplate, attempt } from '../support/attacker';
import { ServerLab } from '../support/server';

interface Attempt {
  token: string;
  what: string;
  outcome: string;
}

/** Each member of the development installation: its library, configuration, token label and user PIN. */
function members(dataDir: string): Array<{ lib: string; conf: string; label: string; pin: string }> {
  const out = [];
  for (const set of readdirSync(join(dataDir, 'softhsm'))) {
    const dir = join(dataDir, 'softhsm', set);
    for (const pinFile of readdirSync(join(dir, 'pins'))) {
      out.push({
        lib: join(dir, 'libsofthsm2.so'),
        conf: join(dir, 'softhsm2.conf'),
        label: pinFile.replace(/\.pin$/, ''),
        pin: readFileSync(join(dir, 'pins', pinFile), 'utf8'),
      });
    }
  }
  return out;
}

/** One attempt of the attacker's, recorded: ALLOWED (with the size of what it got) or the refusal. */
function note(list: Attempt[], token: string, what: string, fn: () => unknown): void {
  let got: unknown;
  const result = attempt(() => (got = fn()));
  list.push({ token, what, outcome: result === 'ok' ? `ALLOWED${Buffer.isBuffer(got) ? ` (${got.length} bytes)` : ''}` : `refused: ${result}` });
}

describe('the domain keys of a development installation cannot be taken out with the user PIN', () => {
  const lab = new ServerLab();
  let records: Buffer[] = [];

  beforeAll(async () => {
    await lab.start();
    const kms = lab.client();
    const { KeyId } = (await kms.CreateKey({ Alias: 'theft-target' })) as { KeyId: string };
    await kms.Encrypt({ KeyId, Plaintext: Buffer.from('tenant secret').toString('base64') });
    await lab.server.close();
    const db = new Database(join(lab.dir, 'kms.db'), { readonly: true });
    records = (db.prepare('SELECT material FROM key_versions').all() as Array<{ material: Buffer }>).map((r) => r.material);
    db.close();
  }, 60_000);
  afterAll(() => lab.stop());

  test('every secret key on every member refuses wrapping under an attacker key and reading its value; no record unwraps into a key the attacker reads or wraps', () => {
    expect(records.length).toBeGreaterThan(0);
    const attempts: Attempt[] = [];
    for (const m of members(lab.dir)) {
      // A private copy of the library per token set: the server's copies were finalised with the server.
      const lib = `${m.lib}.attacker-${m.label}.so`;
      copyFileSync(m.lib, lib);
      process.env.SOFTHSM2_CONF = m.conf;
      const p = new pk.PKCS11();
      p.load(lib);
      p.C_Initialize({ flags: pk.CKF_OS_LOCKING_OK });
      try {
        const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === m.label)!;
        const s = p.C_OpenSession(slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION);
        p.C_Login(s, pk.CKU_USER, m.pin);
        const mine = p.C_GenerateKey(s, { mechanism: pk.CKM_AES_KEY_GEN }, [
          { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
          { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
          { type: pk.CKA_VALUE_LEN, value: 32 },
          { type: pk.CKA_TOKEN, value: false },
          { type: pk.CKA_WRAP, value: true },
          { type: pk.CKA_UNWRAP, value: true },
          { type: pk.CKA_EXTRACTABLE, value: true },
          { type: pk.CKA_SENSITIVE, value: false },
        ]);
        const rsa = p.C_GenerateKeyPair(
          s,
          { mechanism: pk.CKM_RSA_PKCS_KEY_PAIR_GEN },
          [
            { type: pk.CKA_TOKEN, value: false },
            { type: pk.CKA_MODULUS_BITS, value: 2048 },
            { type: pk.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
            { type: pk.CKA_WRAP, value: true },
          ],
          [
            { type: pk.CKA_TOKEN, value: false },
            { type: pk.CKA_UNWRAP, value: true },
            { type: pk.CKA_DECRYPT, value: true },
          ],
        );
        const secrets = allSecretKeys(p, s, true);
        expect(secrets.length).toBeGreaterThanOrEqual(2);
        let kek: pk.Handle | undefined;
        for (const key of secrets) {
          const label = String(p.C_GetAttributeValue(s, key, [{ type: pk.CKA_LABEL }])[0].value);
          if (label.startsWith('kms-domain-kek')) kek = key;
          note(attempts, m.label, `${label}: wrap under the attacker's AES key`, () => p.C_WrapKey(s, { mechanism: 0x210a }, mine, key, Buffer.alloc(1024)));
          note(attempts, m.label, `${label}: wrap under the attacker's RSA key`, () =>
            p.C_WrapKey(s, { mechanism: pk.CKM_RSA_PKCS }, rsa.publicKey, key, Buffer.alloc(1024)),
          );
          note(attempts, m.label, `${label}: read CKA_VALUE`, () => p.C_GetAttributeValue(s, key, [{ type: pk.CKA_VALUE }])[0].value);
        }
        expect(kek).toBeDefined();
        for (const [i, raw] of records.entries()) {
          const record = WrappedMaterial.fromBuffer(raw);
          if (record.spec !== 'AES_256') continue;
          note(attempts, m.label, `record ${i}: unwrap with the KEK into a readable key`, () => {
            const key = p.C_UnwrapKey(s, { mechanism: 0x210a }, kek!, record.wrapped, attackerUnwrapTemplate('readable'));
            return p.C_GetAttributeValue(s, key, [{ type: pk.CKA_VALUE }])[0].value;
          });
          for (const trusted of [undefined, false, true]) {
            note(
              attempts,
              m.label,
              `record ${i}: unwrap with the KEK sensitive, extractable (CKA_WRAP_WITH_TRUSTED ${trusted}), then wrap under the attacker's AES key`,
              () => {
                const key = p.C_UnwrapKey(s, { mechanism: 0x210a }, kek!, record.wrapped, attackerUnwrapTemplate('wrappable', trusted));
                return p.C_WrapKey(s, { mechanism: 0x210a }, mine, key, Buffer.alloc(1024));
              },
            );
          }
        }
      } finally {
        p.C_Finalize();
      }
    }
    const allowed = attempts.filter((a) => a.outcome.startsWith('ALLOWED'));
    expect(attempts.length).toBeGreaterThan(20);
    // Every wrap and every read is refused: no domain key leaves a member; and the KEK's
    // CKA_UNWRAP_TEMPLATE (sensitive, CKA_WRAP_WITH_TRUSTED) leaves no record's key readable or
    // wrappable under a key of the attacker's (docs/security.md §10).
    expect(attempts.filter((a) => a.what.startsWith('record ')).length).toBeGreaterThan(0);
    expect(allowed).toEqual([]);
  });
});
