import { describe, expect, it } from 'vitest';
import { refusalMessage, stopIfRefused } from '../../src/engine/permission-stop.ts';
import { ExistenceCheckError, HttpStatusError, NetworkError } from '../../src/errors.ts';

const UPLOAD = '/identities/api/v1/people/fileDocuments/upload';
const DATA = '/identities/api/v1/people/3f2504e0-4f89-11d3-9a0c-0305e82c3301/fileDocuments/0b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d/data';
const refused = (status: number, method = 'POST', path = UPLOAD) => new HttpStatusError({ method, path, status });

/** A run's counters as RunStore keeps them in Redis. */
function fakeRun(worked = 0) {
  const state = { refused: 0, worked, fatal: undefined as undefined | { message: string; code: string } };
  return {
    state,
    async noteRefusedRow() {
      state.refused++;
      return { refused: state.refused, worked: state.worked };
    },
    async setFatal(message: string, code: string) {
      state.fatal ??= { message, code };
    },
  };
}

describe('stopIfRefused (#16)', () => {
  it('stops the run at the 20th refused row when none was done, naming the permission', async () => {
    const run = fakeRun();
    for (let i = 1; i < 20; i++) expect(await stopIfRefused(run, refused(403))).toBeUndefined();
    expect(run.state.fatal).toBeUndefined();
    const message = await stopIfRefused(run, refused(403));
    expect(message).toContain('lacks the permission "Add Identity Files"');
    expect(run.state.fatal).toEqual({ message, code: 'E_PERMISSION' });
  });

  it('goes on when rows were done (a few forbidden documents are no missing permission)', async () => {
    const run = fakeRun(1);
    for (let i = 0; i < 40; i++) await stopIfRefused(run, refused(403));
    expect(run.state.fatal).toBeUndefined();
  });

  it('counts only refusals, and a refused existence check names its own permission', async () => {
    const run = fakeRun();
    await stopIfRefused(run, new NetworkError({ method: 'POST', path: UPLOAD, sysCode: 'ECONNRESET', requestSent: true }));
    await stopIfRefused(run, refused(404, 'GET', DATA));
    expect(run.state.refused).toBe(0);
    const message = await stopIfRefused(run, new ExistenceCheckError('0b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d', refused(403, 'GET', DATA)), 1);
    expect(message).toContain('lacks the permission "Read Identity Files"');
  });

  it.each([
    [refused(403), 'the first 20 rows all failed with 403 (POST /api/v1/people/fileDocuments/upload answered 403): the account idsync logs in with lacks the permission "Add Identity Files"; ask an administrator to grant it (Identities web app, category "Identities")'],
    [refused(403, 'GET', DATA), 'Read Identity Files'],
    [refused(403, 'GET', '/api/v1/people/detections/personId/p'), 'Read Detections'],
    [refused(403, 'GET', '/api/v1/people/p'), 'Read All Identity'],
    [refused(403, 'GET', '/api/v1/people/enrollmentPhoto/f'), 'is not allowed to do this'],
    [refused(401), 'failed with 401'],
  ])('%s → %s', (err, text) => {
    expect(refusalMessage(err, 20)).toContain(text);
  });
});
