// ESLint (flat config) with typescript-eslint; formatting is Prettier's (eslint-config-prettier
// turns off the rules that would fight it). `npm run lint` runs both checks.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'build-*/', 'docs/api/', 'node_modules/', 'prebuilds/', 'vendor/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2022, sourceType: 'module' },
    rules: {
      // Unused names are TypeScript's job (noUnusedLocals/Parameters); `_` marks the deliberate ones.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      // The addon and koffi are loaded with require() on purpose (optional, per platform).
      '@typescript-eslint/no-require-imports': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
      // Object-literal getters that read their owner's fields name it `owner`.
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['owner'] }],
    },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        process: 'readonly',
        __dirname: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        performance: 'readonly',
        __filename: 'readonly',
      },
    },
  },
  {
    files: ['web/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: {
        window: 'readonly',
        document: 'readonly',
        location: 'readonly',
        history: 'readonly',
        WebSocket: 'readonly',
        VideoDecoder: 'readonly',
        EncodedVideoChunk: 'readonly',
        performance: 'readonly',
        console: 'readonly',
        requestAnimationFrame: 'readonly',
        DecompressionStream: 'readonly',
        Response: 'readonly',
        Blob: 'readonly',
        URLSearchParams: 'readonly',
        ImageData: 'readonly',
        navigator: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        addEventListener: 'readonly',
        innerWidth: 'readonly',
        innerHeight: 'readonly',
        btoa: 'readonly',
      },
    },
  },
  prettier,
  {
    // Prettier wraps code at 120; this keeps strings and comments there too. It comes after
    // `prettier` because eslint-config-prettier turns max-len off (a "special rule" that may be
    // re-enabled only after it).
    rules: { 'max-len': ['error', { code: 120, ignoreUrls: true, ignoreRegExpLiterals: true }] },
  },
);
