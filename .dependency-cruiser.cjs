/**
 * The layers of idsync (README "Development"), each importing only downwards:
 *
 *   src/cli → src/commands → src/engine → jobs, src/store, src/api, src/report, src/sources,
 *   src/outputs, src/sandbox → src/pacing, src/config, src/*.ts (errors, log, text, version …)
 *
 * Within the middle layer: jobs may use the others; the store keeps to reports, inputs and
 * outputs; the API client writes downloads through src/outputs; reports, inputs and outputs use
 * only the bottom (outputs may format cells like reports do); the sandbox stands alone.
 * `npm run lint` checks this; test/unit/layers.test.ts shows that a rule bites.
 */
const BOTTOM = '^src/(pacing|config)/|^src/[^/]+[.]ts$';
const MIDDLE = '^(jobs|src/(store|api|report|sources|outputs|sandbox))/';

const forbid = (name, comment, from, to) => ({ name, comment, severity: 'error', from: { path: from }, to: { path: to } });

module.exports = {
  forbidden: [
    forbid('bottom-imports-up', 'pacing, config and the root modules (errors, log …) import nothing above them', BOTTOM, `^(jobs|src/(cli|commands|engine|store|api|report|sources|outputs|sandbox))/`),
    forbid('middle-imports-engine', 'job kinds, the store, the API client, reports, inputs and outputs never reach up to the engine, commands or the CLI', MIDDLE, '^src/(cli|commands|engine)/'),
    forbid('engine-imports-commands', 'the engine serves every command and knows none of them', '^src/engine/', '^src/(cli|commands)/'),
    forbid('commands-import-cli', 'commands are called by the CLI, never the other way round', '^src/commands/', '^src/cli/'),
    forbid('store-imports-jobs-or-api', 'the store owns Redis state and the ledger; it does not call the API or know job kinds', '^src/store/', '^(jobs|src/api)/'),
    forbid('api-imports-state', 'the API client knows HTTP and files, not queues, runs, reports or job kinds', '^src/api/', '^(jobs|src/(store|report|sources|sandbox))/'),
    forbid('leaf-imports-middle', 'reports, inputs and outputs use only the bottom layer (outputs may format cells like reports)', '^src/(report|sources|outputs)/', '^(jobs|src/(store|api|sandbox))/'),
    forbid('inputs-import-outputs-or-reports', 'inputs (src/sources) read; they neither write outputs nor reports', '^src/sources/', '^src/(outputs|report)/'),
    forbid('reports-import-outputs', 'reports do not write archive files', '^src/report/', '^src/outputs/'),
    forbid('sandbox-stands-alone', 'the sandbox imitates the API; it shares only the bottom layer with idsync', '^src/sandbox/', '^(jobs|src/(cli|commands|engine|store|api|report|sources|outputs))/'),
    { name: 'no-circular', comment: 'no module cycles', severity: 'error', from: {}, to: { circular: true } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    exclude: { path: '^(node_modules|test|bench)/' },
  },
};
