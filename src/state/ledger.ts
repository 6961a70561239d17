export { GROUP_COMMIT_MS, JOURNAL_MAX_BYTES, Ledger, ledgerKey, type LedgerOptions, type LedgerState, type LedgerStats } from '../store/ledger/ledger.ts';
