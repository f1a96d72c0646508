// Lint config. Besides the usual TypeScript rules it enforces the layer direction of
// DESIGN.md: calls go down the chain (cri -> core services -> runtime -> [ttrpc] -> shim),
// never up, and the shim is a separate program that imports nothing from the daemon.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";

const daemonSide = [
  "api",
  "cri",
  "daemon",
  "images",
  "snapshots",
  "metadata",
  "network",
  "oci",
  "runtime",
  "streaming",
  "cli",
];

/** A pattern forbidding relative imports of the given src/ folders. */
function forbid(folders, why) {
  return {
    patterns: [
      {
        // Relative imports that land in src/<folder>/ (e.g. "../cri/x.js", "../../runtime/y.js"),
        // but not generated code such as "../gen/cri/runtime/v1/api.js".
        regex: `^(\\.\\.?/)+(${folders.join("|")})(/|$)`,
        message: why,
      },
    ],
  };
}

export default tseslint.config(
  { ignores: ["dist/**", "build/**", "node_modules/**", "src/gen/**", "native/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  { languageOptions: { globals: globals.node } },
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "error",
    },
  },
  {
    files: ["src/shim/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        forbid(daemonSide, "The shim is its own program: it imports nothing from the daemon (DESIGN.md principle 1)."),
      ],
    },
  },
  {
    files: ["src/api/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        forbid(
          ["shim", "ttrpc", "daemon", "cli", "runtime"],
          "The CLI's API is a translation onto core services, served through cri/server.ts (DESIGN.md principle 1).",
        ),
      ],
    },
  },
  {
    files: ["src/cri/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        forbid(
          ["shim", "ttrpc", "daemon", "cli"],
          "The CRI layer talks to shims only through runtime/ (DESIGN.md principle 1).",
        ),
      ],
    },
  },
  {
    files: [
      "src/runtime/**/*.ts",
      "src/images/**/*.ts",
      "src/snapshots/**/*.ts",
      "src/metadata/**/*.ts",
      "src/network/**/*.ts",
      "src/oci/**/*.ts",
    ],
    rules: {
      "no-restricted-imports": [
        "error",
        forbid(
          ["api", "cri", "daemon", "cli", "shim", "streaming"],
          "Core services never reach up to the CRI layer or the daemon, nor into the shim (DESIGN.md principle 1).",
        ),
      ],
    },
  },
  {
    files: ["src/ttrpc/**/*.ts", "src/sys/**/*.ts", "src/util/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        forbid(
          [...daemonSide, "shim"],
          "ttrpc, sys and util are leaf libraries shared by daemon and shim; they import neither.",
        ),
      ],
    },
  },
  {
    files: ["src/cli/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        forbid(
          ["shim", "runtime", "api", "cri", "daemon", "images", "snapshots", "metadata", "network"],
          "The CLI is a client of berthd's socket only.",
        ),
      ],
    },
  },
);
