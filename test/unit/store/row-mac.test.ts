/**
 * Row MACs that name their generation (rotate-domain re-seals by it): made under the current one,
 * verified only under the generation they name and only while it is held; MACs from before names
 * verify under any held generation.
 */
import { createHmac } from 'node:crypto';
import { GenerationalMac, generationalAuthenticator, LEGACY_GENERATION } from '../../../src/store/row-mac';

const keys: Record<string, Buffer> = { aa01: Buffer.alloc(32, 1), bb02: Buffer.alloc(32, 2) };

function key(state: { current: string; held: string[] }): GenerationalMac {
  return {
    current: () => state.current,
    held: async () => state.held,
    macUnder: async (g, data) => createHmac('sha256', keys[g]).update(data).digest(),
  };
}

describe('generationalAuthenticator', () => {
  const data = Buffer.from('row');

  test('a MAC names the current generation and verifies while it is held; under a rotation the old one verifies until it is destroyed', async () => {
    const state = { current: 'aa01', held: ['aa01'] };
    const auth = generationalAuthenticator(key(state));
    const old = await auth.mac(data);
    expect(auth.generationOf(old)).toBe('aa01');
    expect(await auth.verify(data, old)).toBe(true);
    expect(await auth.verify(Buffer.from('other row'), old)).toBe(false);

    Object.assign(state, { current: 'bb02', held: ['bb02', 'aa01'] });
    const resealed = await auth.mac(data);
    expect(auth.generationOf(resealed)).toBe('bb02');
    expect([await auth.verify(data, old), await auth.verify(data, resealed)]).toEqual([true, true]);

    state.held = ['bb02'];
    expect([await auth.verify(data, old), await auth.verify(data, resealed)]).toEqual([false, true]);
  });

  test('a MAC relabelled with another generation fails; an untagged (pre-generation) MAC verifies under any held generation', async () => {
    const state = { current: 'aa01', held: ['aa01', 'bb02'] };
    const auth = generationalAuthenticator(key(state));
    const mac = await auth.mac(data);
    const relabelled = Buffer.from(mac);
    Buffer.from('bb02', 'hex').copy(relabelled, 2);
    expect(await auth.verify(data, relabelled)).toBe(false);
    const legacy = createHmac('sha256', keys.aa01).update(data).digest();
    expect(auth.generationOf(legacy)).toBe(LEGACY_GENERATION);
    expect(await auth.verify(data, legacy)).toBe(true);
    state.held = ['bb02'];
    expect(await auth.verify(data, legacy)).toBe(false);
    expect(await auth.verify(data, Buffer.alloc(5))).toBe(false);
  });
});
