// Lint: typescript-eslint's strict, type-checked rules over the whole project (code, tests, bench).
// Each rule changed from the preset says why.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**'] },
  js.configs.recommended,
  tseslint.configs.strictTypeChecked,
  tseslint.configs.stylisticTypeChecked,
  {
    languageOptions: { parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname } },
    rules: {
      // numbers and booleans in messages read as themselves; objects and unions with undefined still fail
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      // contradicts no-non-null-assertion (one asks for `!`, the other forbids it); the latter stays
      '@typescript-eslint/non-nullable-type-assertion-style': 'off',
      // `() => void work()` callbacks are the idiom for "fire and handle elsewhere"
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      // `.catch(() => {})` on a best-effort cleanup says "nothing to do" where it happens
      '@typescript-eslint/no-empty-function': ['error', { allow: ['arrowFunctions'] }],
      // an async function without await keeps the async contract of an interface (a source's `open`)
      // and turns a throw into a rejection, which callers rely on
      '@typescript-eslint/require-await': 'off',
      // `_` names a value taken apart only to leave it out (`const { a: _, ...rest } = r`)
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      // finding control bytes is what this project's patterns with them are for (escaping, refusing)
      'no-control-regex': 'off',
    },
  },
  {
    // byte loops over buffers whose bounds the loop itself checks; noUncheckedIndexedAccess cannot see them
    // (their alphabets are ASCII, so spreading one into characters is exact)
    files: ['manifests/age/*.ts', 'manifests/hash-worker.ts', 'manifests/sshkey.ts', 'agent/direct.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off', '@typescript-eslint/no-misused-spread': 'off' },
  },
  {
    // tests read the JSON the CLIs print (typed `any` by JSON.parse); a wrong shape fails the assertion.
    // They also build what the code must refuse: thrown non-errors, forged instances, records with a
    // field deleted, and index into results they have just asserted on.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/only-throw-error': 'off',
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
      '@typescript-eslint/no-dynamic-delete': 'off',
      // a test asserts what the types claim (a parser's result, a flag a callback set): that is its job
      '@typescript-eslint/no-unnecessary-condition': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  { files: ['**/*.js', '**/*.mjs'], extends: [tseslint.configs.disableTypeChecked], languageOptions: { globals: globals.node } },
);
