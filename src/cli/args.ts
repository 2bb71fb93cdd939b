/** A small argument reader for kmsctl: positional words, `--name value` options and `--flag` switches. */
export class Args {
  readonly words: string[] = [];
  private readonly options = new Map<string, string>();
  private readonly flags = new Set<string>();

  constructor(argv: readonly string[], switches: readonly string[] = ['json', 'dev', 'help', 'resume']) {
    for (let i = 0; i < argv.length; i++) {
      const a = argv[i];
      if (!a.startsWith('--')) {
        this.words.push(a);
        continue;
      }
      const name = a.slice(2);
      if (switches.includes(name)) this.flags.add(name);
      else {
        const value = argv[i + 1];
        if (value === undefined || value.startsWith('--')) throw new UsageError(`--${name} needs a value`);
        this.options.set(name, value);
        i++;
      }
    }
  }

  flag(name: string): boolean {
    return this.flags.has(name);
  }

  get(name: string): string | undefined {
    return this.options.get(name);
  }

  need(name: string): string {
    const v = this.options.get(name);
    if (v === undefined) throw new UsageError(`--${name} is required`);
    return v;
  }

  int(name: string): number | undefined {
    const v = this.options.get(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n)) throw new UsageError(`--${name} must be an integer`);
    return n;
  }
}

export class UsageError extends Error {}
