import { refusalOf } from '../api/classify.ts';
import { endpointOf } from '../api/endpoints.ts';
import type { HttpStatusError } from '../errors.ts';
import type { RunStore } from '../store/run-store.ts';

/** Rows refused (401/403) with none done that stop a run: enough to tell a missing permission from a few forbidden documents. */
export const PERMISSION_STOP_ROWS = 20;

/**
 * Fed every row that failed for good: when its failure was the API refusing the account (401, or
 * 403: a missing permission) and the run has refused `rows` rows without doing a single one, the
 * rest would fail the same way. The run's fatal error is recorded (every worker of every machine
 * stops taking its jobs; the command exits 2) naming the permission to ask for. Returns the
 * message when this call stopped the run.
 */
export async function stopIfRefused(run: Pick<RunStore, 'noteRefusedRow' | 'setFatal'>, err: unknown, rows = PERMISSION_STOP_ROWS): Promise<string | undefined> {
  const refusal = refusalOf(err);
  if (!refusal) return undefined;
  const { refused, worked } = await run.noteRefusedRow();
  if (worked > 0 || refused < rows) return undefined;
  const message = refusalMessage(refusal, refused);
  await run.setFatal(message, 'E_PERMISSION');
  return message;
}

/** What to tell the operator: the permission behind the endpoint that refused (docs/api-contract.md). */
export function refusalMessage(refusal: HttpStatusError, rows: number): string {
  const { template, permission } = endpointOf(refusal.method, refusal.path);
  const call = `${refusal.method} ${template} answered ${refusal.status}`;
  if (refusal.status === 401) {
    return `the first ${rows} rows all failed with 401 (${call}, even with a fresh token): the API does not accept the account idsync logs in with for this; check it in the Identities web app`;
  }
  if (permission) {
    return `the first ${rows} rows all failed with 403 (${call}): the account idsync logs in with lacks the permission "${permission}"; ask an administrator to grant it (Identities web app, category "Identities")`;
  }
  return `the first ${rows} rows all failed with 403 (${call}): the account idsync logs in with is not allowed to do this; ask an administrator for the permission`;
}
