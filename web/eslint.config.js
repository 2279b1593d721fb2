// The console's import boundaries, checked by `npm run lint -w web` (part of `make test`).
//
// The console is layered like the Python package (docs/ARCHITECTURE.md): the app shell (main.tsx,
// App.tsx) routes to pages/, pages are built from components/, and both compute with logic/. The
// shared state hooks (api.tsx: the client and its key; queue.tsx: the inspection queue) sit between
// components and logic. A module imports only its own layer or lower ones, so logic/ stays plain
// TypeScript that its vitest tests run without a DOM or React, and a component never reaches up
// into a page. Besides these, only React's two rules of hooks are on (the source already keeps
// them, with a reason where a dependency list is short on purpose); typing is tsc's.
import reactHooks from "eslint-plugin-react-hooks";
import tseslint from "typescript-eslint";

/** `no-restricted-imports` for the files of one layer: each entry is [import regex, why not]. */
function layer(files, forbidden) {
  return {
    files,
    rules: {
      "no-restricted-imports": ["error", { patterns: forbidden.map(([regex, message]) => ({ regex, message })) }],
    },
  };
}

const SHELL = "the app shell (App, main) is the top layer: nothing imports it";

export default [
  { ignores: ["dist/**"] },
  {
    files: ["src/**/*.{ts,tsx}"],
    languageOptions: { parser: tseslint.parser, parserOptions: { ecmaFeatures: { jsx: true } } },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    plugins: { "react-hooks": reactHooks },
    rules: { "react-hooks/rules-of-hooks": "error", "react-hooks/exhaustive-deps": "error" },
  },
  layer(["src/logic/**"], [
    ["^\\.\\./(components|pages)(/|$)", "logic/ is the lowest layer: it must not import components or pages"],
    ["^\\.\\./(api|queue)$", "logic/ is the lowest layer: it takes data as arguments instead of the app's state hooks"],
    ["^\\.\\./(App|main)$", SHELL],
    ["^react(-dom)?(/|$)", "logic/ is plain TypeScript (tested without a DOM): keep React in components and pages"],
  ]),
  layer(["src/api.tsx", "src/queue.tsx"], [
    ["^\\./(components|pages)(/|$)", "the state hooks sit below components and pages: they must not import them"],
    ["^\\./(App|main)$", SHELL],
  ]),
  layer(["src/components/**"], [
    ["^\\.\\./pages(/|$)", "components/ sit below pages: a component must not import a page"],
    ["^\\.\\./(App|main)$", SHELL],
  ]),
  layer(["src/pages/**"], [
    ["^\\./", "pages are reached through the router, not from each other: share through components/ or logic/"],
    ["^\\.\\./(App|main)$", SHELL],
  ]),
];
