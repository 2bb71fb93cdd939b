/**
 * The KMS core speaks no protocol (docs/architecture.md, docs/kms-core.md): a second front-end (the
 * AWS KMS API) must map onto src/kms without changing it. This test reads every file of src/kms and
 * fails on what would tie it to the Tencent wire:
 * - an import of src/api (the layer test forbids it too; here it is the first thing a front-end would add);
 * - a Tencent request or answer field name (ACTION_SCHEMAS of api/params.ts, and the PascalCase keys
 *   the wire mapping writes in api/kms-wire.ts and api/handlers.ts) as a whole word in a string or
 *   template literal, or as a property name (declared, written or read);
 * - a Tencent KeyUsage name (ENCRYPT_DECRYPT, ASYMMETRIC_...) anywhere in a literal or property name:
 *   the core's usages are its own (kms/key-usage.ts); their stored codes live in common/key-usages.ts.
 * Comments are not read: they may say what a wire calls a thing.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import * as ts from 'typescript';
import { keyUsageToWire } from '../../../src/api/kms-wire';
import { ACTION_SCHEMAS, Fields, FieldSpec, ServedAction } from '../../../src/api/params';
import { KEY_USAGE_NAMES } from '../../../src/common/key-usages';

const ROOT = join(__dirname, '..', '..', '..', '..');

/**
 * Words that are Tencent field names and also the core's own vocabulary, each with why it may stay.
 * An entry no longer found in src/kms fails the test, so the list only shrinks.
 */
const ALLOWED: Readonly<Record<string, string>> = {};

const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

function kmsFiles(): string[] {
  return readdirSync(join(ROOT, 'src/kms'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => posix.join('src/kms', f));
}

function requestFieldNames(fields: Fields, out: Set<string>): void {
  for (const [name, spec] of Object.entries(fields)) {
    out.add(name);
    let s: FieldSpec = spec;
    while (s.kind === 'array') s = s.of;
    if (s.kind === 'object') requestFieldNames(s.fields, out);
  }
}

/** PascalCase property names the wire mapping writes into answers. */
function answerFieldNames(path: string, out: Set<string>): void {
  const visit = (n: ts.Node): void => {
    if (
      (ts.isPropertyAssignment(n) || ts.isPropertySignature(n) || ts.isShorthandPropertyAssignment(n)) &&
      ts.isIdentifier(n.name) &&
      /^[A-Z][a-z]/.test(n.name.text)
    )
      out.add(n.name.text);
    ts.forEachChild(n, visit);
  };
  visit(ts.createSourceFile(path, read(path), ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS));
}

function wireNames(): Set<string> {
  const names = new Set<string>();
  for (const action of Object.keys(ACTION_SCHEMAS) as ServedAction[]) requestFieldNames(ACTION_SCHEMAS[action], names);
  answerFieldNames('src/api/kms-wire.ts', names);
  answerFieldNames('src/api/handlers.ts', names);
  // the handler table's keys are action names, not fields (a core action name such as Encrypt is the core's own word)
  for (const action of Object.keys(ACTION_SCHEMAS)) names.delete(action);
  return names;
}

interface Finding {
  file: string;
  line: number;
  word: string;
  where: 'literal' | 'property' | 'import';
}

/** Literal texts and property names of a file, with their lines. */
function scan(file: string, text: string): { literals: Array<[string, number]>; properties: Array<[string, number]>; imports: Array<[string, number]> } {
  const src = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const line = (n: ts.Node) => src.getLineAndCharacterOfPosition(n.getStart(src)).line + 1;
  const literals: Array<[string, number]> = [];
  const properties: Array<[string, number]> = [];
  const imports: Array<[string, number]> = [];
  const visit = (n: ts.Node): void => {
    if (ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) {
      if (n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) imports.push([n.moduleSpecifier.text, line(n)]);
      return;
    }
    if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) literals.push([n.text, line(n)]);
    else if (ts.isTemplateHead(n) || ts.isTemplateMiddle(n) || ts.isTemplateTail(n)) literals.push([n.text, line(n)]);
    else if (ts.isPropertyAccessExpression(n)) properties.push([n.name.text, line(n.name)]);
    else if (
      (ts.isPropertyAssignment(n) ||
        ts.isPropertySignature(n) ||
        ts.isPropertyDeclaration(n) ||
        ts.isMethodDeclaration(n) ||
        ts.isShorthandPropertyAssignment(n)) &&
      ts.isIdentifier(n.name)
    )
      properties.push([n.name.text, line(n.name)]);
    ts.forEachChild(n, visit);
  };
  visit(src);
  return { literals, properties, imports };
}

function findings(files: ReadonlyMap<string, string>, names: ReadonlySet<string>, usages: readonly string[]): Finding[] {
  const out: Finding[] = [];
  const usagePattern = new RegExp(`\\b(${usages.join('|')})\\b`, 'g');
  for (const [file, text] of files) {
    const { literals, properties, imports } = scan(file, text);
    for (const [spec, line] of imports) if (/(^|\/)api(\/|$)/.test(spec)) out.push({ file, line, word: spec, where: 'import' });
    for (const [lit, line] of literals) {
      for (const word of lit.match(/\b[A-Z][A-Za-z0-9]*\b/g) ?? []) if (names.has(word)) out.push({ file, line, word, where: 'literal' });
      for (const m of lit.matchAll(usagePattern)) out.push({ file, line, word: m[1], where: 'literal' });
    }
    for (const [name, line] of properties) if (names.has(name) || usages.includes(name)) out.push({ file, line, word: name, where: 'property' });
  }
  return out;
}

describe('src/kms holds no Tencent wire names', () => {
  const names = wireNames();
  const usages = KEY_USAGE_NAMES.map(keyUsageToWire);
  const files = new Map(kmsFiles().map((f) => [f, read(f)]));

  test('the lists the check uses are not empty (the wire mapping was read)', () => {
    for (const n of ['KeyId', 'CiphertextBlob', 'EncryptionContext', 'NumberOfBytes', 'KeySpec', 'Plaintext', 'KeyMetadata', 'TotalCount', 'TagFilters'])
      expect(names.has(n)).toBe(true);
    expect(usages).toContain('ENCRYPT_DECRYPT');
    expect(files.size).toBeGreaterThan(20);
  });

  test('no import of api/, no wire field name in a literal or property name, no Tencent KeyUsage name', () => {
    const found = findings(files, names, usages).filter((f) => !Object.hasOwn(ALLOWED, f.word));
    expect(found.map((f) => `${f.file}:${f.line} ${f.where} ${f.word}`)).toEqual([]);
  });

  test('every allowed word is still found (the allow-list only shrinks)', () => {
    const all = new Set(findings(files, names, usages).map((f) => f.word));
    expect(Object.keys(ALLOWED).filter((w) => !all.has(w))).toEqual([]);
  });

  test('the check catches what it is for', () => {
    const bad = new Map([
      [
        'src/kms/bad.ts',
        [
          "import { x } from '../api/kms-wire';",
          "export const a = { KeyId: 'k' };",
          'export const b = (p: { Plaintext: Buffer }) => p.Plaintext;',
          'export const c = (n: number) => `NumberOfBytes must be ${n}`;',
          "export const d = 'usage ASYMMETRIC_SIGN_VERIFY_ECC';",
          "export const ok = 'keyId plaintext Enabled';",
        ].join('\n'),
      ],
    ]);
    expect(
      findings(bad, names, usages)
        .map((f) => `${f.line} ${f.where} ${f.word}`)
        .sort(),
    ).toEqual([
      '1 import ../api/kms-wire',
      '2 property KeyId',
      '3 property Plaintext',
      '3 property Plaintext',
      '4 literal NumberOfBytes',
      '5 literal ASYMMETRIC_SIGN_VERIFY_ECC',
    ]);
  });
});
