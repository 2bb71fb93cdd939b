// Type-checked rules that find bugs in this code (floating or misused promises, awaiting non-promises, `any`
// leaking into typed code, needless assertions); no stylistic rules: layout is prettier's (npm run format).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'var/'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname } },
    rules: {
      // async implementations of async interfaces (stores, HSM calls) reject rather than throw: keep them async
      '@typescript-eslint/require-await': 'off',
      // tsc checks this (noUnusedLocals, noUnusedParameters), with the `_` convention for omitted fields
      '@typescript-eslint/no-unused-vars': 'off',
      // String(unknown) in log lines and messages is deliberate
      '@typescript-eslint/no-base-to-string': 'off',
      // passing on a caught `unknown` is not inventing a non-Error reason
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
    },
  },
  {
    // tests read JSON bodies and use jest's asymmetric matchers (expect.any(...)), which are typed `any`
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      // a child process's error (ExecFileException) is passed on as it came
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    rules: { ...tseslint.configs.disableTypeChecked.rules, '@typescript-eslint/no-require-imports': 'off' },
  },
);
