/**
 * What a data directory holds, by name: one list for the server, kmsctl and the development
 * set-up (`kmsctl init --dev`, `make run`). Paths in kms.yaml are relative to it.
 */

/** Where the server and kmsctl look without --data-dir or $KMS_DATA_DIR. */
export const DEFAULT_DATA_DIR = './var';
/** The configuration, HSM clusters included, written by `kmsctl init`. */
export const CONFIG_FILE = 'kms.yaml';
/** The SQLite key store (and audit trail, identities) when kms.yaml names no other path. */
export const SQLITE_FILE = 'kms.db';
/** Where the audit trail's expired segments are archived when kms.yaml names no other directory. */
export const AUDIT_ARCHIVE_DIR = 'audit-archive';

/** Development only: the root account's credentials (0600). */
export const DEV_CREDENTIALS = 'dev-credentials.json';
/** Development only: the tokens' SO PINs (0600), away from the user PINs; production provisioning keeps none. */
export const DEV_SO_PINS = 'dev-so-pins';
/** Development only: the SoftHSM2 token sets, one directory per cluster. */
export const DEV_SOFTHSM_DIR = 'softhsm';
/** Development only: the alarm log and the audit anchors file the development kms.yaml names. */
export const DEV_ALARMS_LOG = 'alarms.log';
export const DEV_AUDIT_ANCHORS = 'audit-anchors.jsonl';

/** The data directory a command runs on: its --data-dir, else $KMS_DATA_DIR, else DEFAULT_DATA_DIR. */
export function dataDirOf(arg: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return arg ?? env.KMS_DATA_DIR ?? DEFAULT_DATA_DIR;
}
