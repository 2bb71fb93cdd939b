/**
 * fast-check 4's type declarations import `pure-rand/types/*`, subpaths that only the `exports` map of
 * pure-rand 8 names; this repository compiles with `moduleResolution: node`, which ignores `exports`.
 * These two declarations point the subpaths at the files the map names, so fast-check type-checks
 * without changing the project's resolution settings.
 */
declare module 'pure-rand/types/RandomGenerator' {
  export * from 'fast-check/node_modules/pure-rand/lib/esm/types/RandomGenerator';
}
declare module 'pure-rand/types/JumpableRandomGenerator' {
  export * from 'fast-check/node_modules/pure-rand/lib/esm/types/JumpableRandomGenerator';
}
