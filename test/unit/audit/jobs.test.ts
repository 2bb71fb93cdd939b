import { ANCHOR_KIND, Anchor, readAnchors } from '../../../src/audit/anchors';
import { AuditLog, RetainedRange } from '../../../src/audit/audit-log';
import { ChainHead } from '../../../src/audit/chain';
import { AuditJobs, AuditJobsOptions } from '../../../src/audit/jobs';

/** The parts of an AuditLog the jobs use; the rest is never called here. */
function fakeLog(head: () => ChainHead | undefined, retain: (cutoff: number) => number): AuditLog {
  return {
    head: async () => head(),
    flush: async () => undefined,
    retainOlderThan: async (cutoff: number, archive: (r: RetainedRange) => Promise<void>) => {
      const n = retain(cutoff);
      if (n > 0) await archive({ from: 1, to: n, text: '' });
      return n;
    },
  } as Partial<AuditLog> as AuditLog;
}

function jobs(over: Partial<AuditJobsOptions> & { leader?: boolean }) {
  const pushed: Anchor[] = [];
  const errors: string[] = [];
  const j = new AuditJobs({
    log: fakeLog(
      () => ({ seq: 1, hash: 'a'.repeat(64) }),
      () => 0,
    ),
    lease: { acquire: async () => over.leader ?? true, release: async () => undefined },
    sink: async (a) => {
      pushed.push(a);
    },
    intervalMs: 1000,
    archive: async () => undefined,
    now: () => 5 * 86_400_000,
    onError: (m) => errors.push(m),
    ...over,
  });
  return { j, pushed, errors };
}

describe('audit jobs', () => {
  test('only the lease holder anchors, and only when the head moved', async () => {
    expect(await jobs({ leader: false }).j.runOnce()).toEqual({ leader: false, retained: 0 });
    let head: ChainHead = { seq: 1, hash: 'a'.repeat(64) };
    const { j, pushed } = jobs({
      log: fakeLog(
        () => head,
        () => 0,
      ),
    });
    expect((await j.runOnce()).anchored).toBe(1);
    expect((await j.runOnce()).anchored).toBeUndefined();
    head = { seq: 2, hash: 'b'.repeat(64) };
    await j.runOnce();
    expect(pushed.map((a) => [a.kind, a.seq, a.time])).toEqual([
      [ANCHOR_KIND, 1, 5 * 86_400_000],
      [ANCHOR_KIND, 2, 5 * 86_400_000],
    ]);
    await j.stop();
    expect(pushed).toHaveLength(2);
  });

  test('retention runs until nothing is older than the period; a failing sink is reported, not thrown', async () => {
    const cutoffs: number[] = [];
    const steps = [3, 2, 0];
    const { j, errors } = jobs({
      retentionDays: 2,
      log: fakeLog(
        () => ({ seq: 9, hash: 'c'.repeat(64) }),
        (c) => (cutoffs.push(c), steps.shift() ?? 0),
      ),
      sink: async () => {
        throw new Error('sink down');
      },
    });
    expect(await j.runOnce()).toEqual({ leader: true, retained: 5, anchored: undefined });
    expect(cutoffs).toEqual([3 * 86_400_000, 3 * 86_400_000, 3 * 86_400_000]);
    expect(errors).toEqual(['audit anchor: sink down']);
  });

  test('anchors are read back from JSON lines and from syslog lines; anything else that claims to be one is refused', () => {
    const line = `{"kind":"${ANCHOR_KIND}","seq":7,"hash":"${'d'.repeat(64)}","time":1}`;
    expect(readAnchors(`${line}\nnoise\n<110>1 2026-01-01T00:00:00Z h kms-audit 1 anchor - ${line.replace('"seq":7', '"seq":8')}\n`)).toEqual([
      { seq: 7, hash: 'd'.repeat(64) },
      { seq: 8, hash: 'd'.repeat(64) },
    ]);
    expect(() => readAnchors(`{"kind":"${ANCHOR_KIND}","seq":"x","hash":"y"}`)).toThrow(/not an audit anchor/);
  });
});
