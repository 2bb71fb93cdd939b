/**
 * The archive file retention writes before it removes events: JSON lines, a header first, then the
 * stored events in seq order. The header carries the start link (the first event's prevHash and,
 * past seq 1, the MAC of the start record it began at) and the last link, so the file verifies on its
 * own through the HSM, and the next file (or the kept trail) must begin where it ends.
 */
import { ChainSlot, VerifyProblem } from './chain';
import { StoredAuditEvent, parseStored } from './event';
import { AuditInputError } from './errors';

export const EXPORT_KIND = 'kms-audit-export';

export interface ExportHeader {
  kind: typeof EXPORT_KIND;
  version: 1;
  from: number;
  to: number;
  start: { seq: number; prevHash: string; mac?: string };
  /** The link of event `to`: the kept trail's first prevHash. */
  last: string;
}

export function exportHeader(start: { seq: number; prevHash: string; mac?: string }, last: StoredAuditEvent): ExportHeader {
  return {
    kind: EXPORT_KIND,
    version: 1,
    from: start.seq,
    to: last.seq,
    start: { seq: start.seq, prevHash: start.prevHash, ...(start.mac ? { mac: start.mac } : {}) },
    last: last.hash,
  };
}

function parseHeader(line: string | undefined): ExportHeader {
  let doc: unknown;
  try {
    doc = JSON.parse(line ?? '');
  } catch {
    throw new AuditInputError('not an audit export file: the first line is not JSON');
  }
  const h = doc as Partial<ExportHeader>;
  const ok =
    h.kind === EXPORT_KIND &&
    h.version === 1 &&
    Number.isSafeInteger(h.from) &&
    Number.isSafeInteger(h.to) &&
    typeof h.last === 'string' &&
    typeof h.start?.prevHash === 'string' &&
    h.start.seq === h.from;
  if (!ok) throw new AuditInputError(`not an audit export file: the first line is not a ${EXPORT_KIND} header`);
  return h as ExportHeader;
}

/** The header and the events of an export file as slots (in file order; lines out of order are problems). */
export function parseExport(text: string): { header: ExportHeader; slots: ChainSlot[]; problems: VerifyProblem[] } {
  const lines = text.split('\n').filter((l) => l !== '');
  const header = parseHeader(lines[0]);
  const slots: ChainSlot[] = [];
  const problems: VerifyProblem[] = [];
  let last = header.from - 1;
  for (const line of lines.slice(1)) {
    const e = parseStored(line);
    const seq = typeof e === 'string' ? last + 1 : e.seq;
    if (seq <= last) {
      problems.push({ seq, reason: `the line of event ${seq} comes after event ${last} (reordered)` });
      continue;
    }
    slots.push({ seq, event: typeof e === 'string' ? { unreadable: e } : e });
    last = seq;
  }
  return { header, slots, problems };
}
