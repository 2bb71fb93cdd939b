import * as pk from 'pkcs11js';
import { ConfigError, InvalidInputError } from './errors';
import type { Pkcs11Module } from './module';

/** PKCS#11 token labels are 32 bytes, blank-padded. */
const LABEL_BYTES = 32;

export interface TokenInit {
  label: string;
  soPin: string;
  userPin: string;
  /**
   * The SO PIN the free token has now, when C_InitToken must be given it (openCryptoki's swtok ships
   * with a published default); the SO PIN is then changed to `soPin`.
   */
  currentSoPin?: string;
}

function padded(label: string): string {
  if (!/^[A-Za-z0-9._-]{1,32}$/.test(label)) throw new InvalidInputError('a token label is 1-32 of [A-Za-z0-9._-]');
  return label.padEnd(LABEL_BYTES, ' ');
}

function freeSlot(api: pk.PKCS11): pk.Handle {
  const free = api.C_GetSlotList(true).find((s) => (api.C_GetTokenInfo(s).flags & pk.CKF_TOKEN_INITIALIZED) === 0);
  if (free === undefined) throw new ConfigError('the module has no free (uninitialised) token slot');
  return free;
}

/**
 * Initialises a free token of an initialised module with C_InitToken, then sets the user PIN with
 * C_InitPIN as the Security Officer. Done through the PKCS#11 API, so no PIN ever reaches a
 * command line (softhsm2-util takes PINs only as arguments or from a terminal).
 */
export function initToken(module: Pkcs11Module, token: TokenInit): void {
  const api = module.api;
  if (module.tokens().some((t) => t.label === token.label)) throw new ConfigError(`a token labelled "${token.label}" exists already`);
  const soPin = token.currentSoPin ?? token.soPin;
  api.C_InitToken(freeSlot(api), soPin, padded(token.label));
  const session = api.C_OpenSession(module.findToken(token.label).slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION);
  try {
    api.C_Login(session, pk.CKU_SO, soPin);
    if (soPin !== token.soPin) api.C_SetPIN(session, soPin, token.soPin);
    api.C_InitPIN(session, token.userPin);
    api.C_Logout(session);
  } finally {
    api.C_CloseSession(session);
  }
}
