/**
 * The import rules of docs/architecture.md, read from its tables: every import of every file in
 * src/ (import, export-from, import type, import(), require(), import('…') types) against the layer
 * map, the packages held to layers, and the backends.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import * as ts from 'typescript';

const ROOT = join(__dirname, '..', '..', '..');
const DOC = 'docs/architecture.md';

/** Imports allowed to break a rule while a move is in progress (none today). An entry that no longer breaks a rule fails the test. */
const KNOWN: ReadonlyArray<readonly [file: string, target: string]> = [];

interface Layer {
  name: string;
  rank: number;
  /** Folders (ending in `/`) and files. */
  paths: string[];
}

interface Rules {
  layers: Layer[];
  /** Package name -> the layers that may import it. */
  packages: Map<string, string[]>;
  backend: { patterns: RegExp[]; importers: string[] };
}

interface Violation {
  file: string;
  target: string;
  message: string;
}

/** The table rows after `<!-- <marker>`: cells of each row, without the header and separator rows. */
function table(doc: string, marker: string): string[][] {
  const lines = doc.split('\n');
  const at = lines.findIndex((l) => l.startsWith(`<!-- ${marker}`));
  if (at < 0) throw new Error(`${DOC} has no "<!-- ${marker}" table`);
  const rows: string[][] = [];
  for (const line of lines.slice(at + 1)) {
    if (!line.startsWith('|')) break;
    rows.push(
      line
        .slice(1, line.lastIndexOf('|'))
        .split('|')
        .map((c) => c.trim()),
    );
  }
  return rows.slice(2);
}

const ticked = (cell: string): string[] => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
const listed = (cell: string): string[] =>
  cell
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
const glob = (pattern: string): RegExp => new RegExp(`^${pattern.replace(/[.]/g, '\\.').replace(/\*/g, '[^/]*')}$`);

function parseRules(doc: string): Rules {
  const layers = table(doc, 'layer-map').map(([rank, name, files]) => ({ rank: Number(rank), name, paths: ticked(files) }));
  const names = new Set(layers.map((l) => l.name));
  const known =
    (where: string) =>
    (n: string): string => {
      if (!names.has(n) && n !== 'backends') throw new Error(`${DOC} ${where}: "${n}" is not a layer of the layer map`);
      return n;
    };
  const packages = new Map<string, string[]>();
  for (const [pkgs, only] of table(doc, 'package-map')) for (const p of ticked(pkgs)) packages.set(p, listed(only).map(known('package-map')));
  const [backend] = table(doc, 'backend-map');
  return { layers, packages, backend: { patterns: ticked(backend[0]).map(glob), importers: listed(backend[1]).map(known('backend-map')) } };
}

function layerOf(rules: Rules, file: string): Layer | undefined {
  return rules.layers.find((l) => l.paths.some((p) => (p.endsWith('/') ? file.startsWith(p) : file === p)));
}

/** Every module specifier of a source file; a require() or import() of a computed name is returned as undefined. */
function specifiers(file: string, text: string): Array<string | undefined> {
  const out: Array<string | undefined> = [];
  const visit = (n: ts.Node): void => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier))
      out.push(n.moduleSpecifier.text);
    else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference)) {
      out.push(ts.isStringLiteral(n.moduleReference.expression) ? n.moduleReference.expression.text : undefined);
    } else if (
      ts.isCallExpression(n) &&
      (n.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(n.expression) && n.expression.text === 'require'))
    ) {
      const [arg] = n.arguments;
      out.push(arg !== undefined && ts.isStringLiteralLike(arg) ? arg.text : undefined);
    } else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) out.push(n.argument.literal.text);
    ts.forEachChild(n, visit);
  };
  visit(ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS));
  return out;
}

/** `node:fs/promises` -> `fs`, `@scope/pkg/sub` -> `@scope/pkg`. */
function packageOf(spec: string): string {
  const parts = spec.replace(/^node:/, '').split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** A relative import as the repository path of the file it loads (`.ts`, else `/index.ts`). */
function resolveImport(file: string, spec: string, exists: (path: string) => boolean): string {
  const base = posix.normalize(posix.join(posix.dirname(file), spec));
  return [base, `${base}.ts`, `${base}/index.ts`].find((p) => p.endsWith('.ts') && exists(p)) ?? `${base}.ts`;
}

/** Every import of `files` (repository path -> source) that breaks a rule. */
function violations(rules: Rules, files: ReadonlyMap<string, string>, exists = (p: string) => files.has(p)): Violation[] {
  const out: Violation[] = [];
  const isBackend = (path: string): boolean => {
    const segments = path.split('/');
    const name = segments.pop() ?? '';
    return rules.backend.patterns.some((re) => re.test(name) || segments.some((dir) => re.test(`${dir}/`)));
  };
  for (const [file, text] of files) {
    const from = layerOf(rules, file);
    if (!from) {
      out.push({ file, target: '', message: `${file} is in no layer of ${DOC}: add its folder or file to the layer map` });
      continue;
    }
    for (const spec of specifiers(file, text)) {
      if (spec === undefined) {
        out.push({ file, target: '', message: `${file}: a require() or import() of a computed name cannot be checked against the layer map` });
        continue;
      }
      const said = `${file} imports '${spec}'`;
      if (!spec.startsWith('.')) {
        const pkg = packageOf(spec);
        const only = rules.packages.get(pkg);
        if (only && !only.includes(from.name))
          out.push({ file, target: pkg, message: `${said}: package ${pkg} is for ${only.join(', ')} only, and ${file} is in ${from.name} (${DOC}, packages)` });
        continue;
      }
      const target = resolveImport(file, spec, exists);
      const to = layerOf(rules, target);
      if (!to) {
        out.push({ file, target, message: `${said} (${target}), which is in no layer of ${DOC}` });
        continue;
      }
      if (to !== from && to.rank >= from.rank) {
        const way = to.rank > from.rank ? 'upward' : 'sideways';
        out.push({
          file,
          target,
          message: `${said} (${target}): ${from.name} (rank ${from.rank}) may import only lower ranks; ${to.name} is rank ${to.rank}, so this runs ${way} (${DOC}, layer map)`,
        });
        continue;
      }
      const sameFolder = posix.dirname(target) === posix.dirname(file);
      if (isBackend(target) && !sameFolder && !isBackend(file) && !rules.backend.importers.includes(from.name)) {
        out.push({
          file,
          target,
          message: `${said} (${target}): a backend is imported from another folder only by backends and ${rules.backend.importers.join(', ')}; ${file} is in ${from.name} (${DOC}, backends)`,
        });
      }
    }
  }
  return out;
}

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

const known = (v: Violation): boolean => KNOWN.some(([file, target]) => v.file === file && v.target === target);

describe(`imports in src/ follow ${DOC}`, () => {
  const rules = parseRules(readFileSync(join(ROOT, DOC), 'utf8'));
  const files = new Map(sources('src').map((f) => [f, readFileSync(join(ROOT, f), 'utf8')]));
  const found = violations(rules, files, (p) => existsSync(join(ROOT, p)));

  test('the doc has the layers and rules this test reads', () => {
    expect(rules.layers.map((l) => l.name)).toEqual(expect.arrayContaining(['common', 'hsm', 'store', 'audit', 'kms', 'iam', 'api', 'cli', 'main']));
    expect(rules.layers.every((l) => Number.isInteger(l.rank) && l.paths.length > 0)).toBe(true);
    expect(rules.packages.get('pkcs11js')).toEqual(['hsm']);
    expect(rules.backend.patterns.length).toBeGreaterThan(0);
    expect(files.size).toBeGreaterThan(100);
  });

  test('no import runs upward or sideways, uses a package outside its layers, or reaches a backend from the core', () => {
    expect(found.filter((v) => !known(v)).map((v) => v.message)).toEqual([]);
  });

  test('every allow-listed import still breaks a rule (else remove it from KNOWN)', () => {
    const stale = KNOWN.filter(([file, target]) => !found.some((v) => v.file === file && v.target === target));
    expect(stale.map(([file, target]) => `${file} -> ${target}`)).toEqual([]);
  });
});

describe('the import check itself', () => {
  const rules = parseRules(readFileSync(join(ROOT, DOC), 'utf8'));
  const check = (file: string, text: string, others: string[] = []): string[] =>
    violations(rules, new Map([[file, text], ...others.map((o): [string, string] => [o, ''])])).map((v) => v.message);

  test.each([
    [
      'an upward import',
      'src/hsm/x.ts',
      "import { Kms } from '../kms/service';",
      ['src/kms/service.ts'],
      /src\/hsm\/x\.ts imports '\.\.\/kms\/service' \(src\/kms\/service\.ts\): hsm \(rank 1\) .* kms is rank 2, so this runs upward/,
    ],
    [
      'a sideways import',
      'src/store/x.ts',
      "export { HsmError } from '../hsm/errors';",
      ['src/hsm/errors.ts'],
      /src\/store\/x\.ts imports '\.\.\/hsm\/errors' .*store \(rank 1\).*hsm is rank 1, so this runs sideways/,
    ],
    ['a type-only import', 'src/common/x.ts', "import type { KeyRecord } from '../store/store';", ['src/store/store.ts'], /common \(rank 0\).*upward/],
    ['a require()', 'src/kms/x.ts', "const api = require('../api/app');", ['src/api/app.ts'], /src\/kms\/x\.ts imports '\.\.\/api\/app'.*upward/],
    ['an import()', 'src/iam/x.ts', "void import('../kms/errors');", ['src/kms/errors.ts'], /iam \(rank 2\).*kms is rank 2, so this runs sideways/],
    ['an import type node', 'src/hsm/x.ts', "let s: typeof import('../server');", ['src/server.ts'], /hsm \(rank 1\).*composition is rank 4/],
    ['a folder index', 'src/store/x.ts', "import { HsmCluster } from '../hsm';", ['src/hsm/index.ts'], /\(src\/hsm\/index\.ts\).*sideways/],
    [
      'pkcs11js in the core',
      'src/kms/x.ts',
      "import * as pk from 'pkcs11js';",
      [],
      /src\/kms\/x\.ts imports 'pkcs11js': package pkcs11js is for hsm only, and src\/kms\/x\.ts is in kms/,
    ],
    ['HTTP in the core', 'src/kms/x.ts', "import type { IncomingMessage } from 'node:http';", [], /package http is for api, composition only/],
    [
      'a backend from the core',
      'src/kms/x.ts',
      "import { SqliteMetadataStore } from '../store/sqlite-store';",
      ['src/store/sqlite-store.ts'],
      /a backend is imported from another folder only by backends and .*; src\/kms\/x\.ts is in kms/,
    ],
    [
      'a backend folder from the core',
      'src/kms/x.ts',
      "import { RedisMetadataStore } from '../store/redis/store';",
      ['src/store/redis/store.ts'],
      /a backend is imported from another folder only by backends and .*; src\/kms\/x\.ts is in kms/,
    ],
    ['a file in no layer', 'src/elsewhere.ts', 'export const x = 1;', [], /src\/elsewhere\.ts is in no layer/],
    ['a computed require', 'src/api/x.ts', 'const m = require(name);', [], /computed name/],
  ])('%s is reported, naming the file, the import and the rule', (_name, file, text, others, message) => {
    const got = check(file, text, others);
    expect(got).toHaveLength(1);
    expect(got[0]).toMatch(message);
  });

  test.each([
    ['a lower rank', 'src/api/x.ts', "import { HsmError } from '../hsm/errors';", ['src/hsm/errors.ts']],
    ['its own layer', 'src/kms/x.ts', "import { KmsError } from './errors';", ['src/kms/errors.ts']],
    ['a backend from composition', 'src/services.ts', "import { RedisMetadataStore } from './store/redis-store';", ['src/store/redis-store.ts']],
    ['a backend from a backend', 'src/iam/redis-x.ts', "import { closeRedis } from '../store/redis-connection';", ['src/store/redis-connection.ts']],
    ['a backend folder using the store Redis opener', 'src/store/redis/x.ts', "import { execAll } from '../redis-client';", ['src/store/redis-client.ts']],
    ['a backend of its own folder', 'src/audit/index.ts', "export * from './sqlite-audit-log';", ['src/audit/sqlite-audit-log.ts']],
    ['an unlisted package', 'src/kms/x.ts', "import { randomUUID } from 'node:crypto';", []],
  ])('%s is allowed', (_name, file, text, others) => {
    expect(check(file, text, others)).toEqual([]);
  });

  test('a layer map that is not where the test looks is an error, not an empty map', () => {
    expect(() => parseRules('# no tables here\n')).toThrow(/has no "<!-- layer-map" table/);
  });
});
