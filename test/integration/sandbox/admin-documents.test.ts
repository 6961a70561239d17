import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PERMISSIONS, startSandbox } from '../../../src/sandbox/index.ts';
import { tempDir } from '../../helpers/fixtures.ts';
import { login, uploadForm, withSandbox } from '../../helpers/sandbox.ts';

const PERSON = '6fa459ea-ee8a-4ca4-894e-db77e160355e';
const DOC = '16fd2706-8baf-433b-82eb-8c7fada847da';
const OTHER = '7c9e6679-7425-40de-944b-e07fc1f90ae7';

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

describe('the sandbox admin calls on stored documents', () => {
  it('replace the bytes (metadata and upload count stay) and delete a document, and both survive a restart', async () => {
    const dir = tempDir('sandbox-docs');
    const s = await startSandbox({ dir, admin: true, users: [{ username: 'migrator', password: 'pw-1', permissions: [...PERMISSIONS] }] });
    const token = await login(s);
    const auth = { authorization: `Bearer ${token}` };
    const stored = await fetch(`${s.url}/api/v1/people/fileDocuments/upload`, { method: 'POST', headers: auth, body: uploadForm({ personId: PERSON, name: 'Passport', publicId: DOC }, { name: 'a.pdf', bytes: 'original', type: 'application/pdf' }) });
    expect(stored.status).toBe(200);
    await fetch(`${s.url}/api/v1/people/fileDocuments/upload`, { method: 'POST', headers: auth, body: uploadForm({ personId: PERSON, name: 'Other', publicId: OTHER }, { name: 'b.pdf', bytes: 'other' }) });
    const data = (id: string) => fetch(`${s.url}/api/v1/people/${PERSON}/fileDocuments/${id}/data`, { headers: auth });

    const replaced = await fetch(`${s.origin}/_admin/documents/${PERSON}/${DOC.toUpperCase()}`, { method: 'PUT', body: 'tampered bytes' });
    expect(replaced.status).toBe(200);
    expect(await replaced.json()).toMatchObject({ documentId: DOC, name: 'Passport', fileName: 'a.pdf', bytes: 14, sha256: sha('tampered bytes'), uploads: 1 });
    const served = await data(DOC);
    expect(served.headers.get('content-type')).toBe('application/pdf');
    expect(await served.text()).toBe('tampered bytes');

    expect((await fetch(`${s.origin}/_admin/documents/${PERSON}/${OTHER}`, { method: 'DELETE' })).status).toBe(204);
    expect((await data(OTHER)).status).toBe(404);
    expect((await fetch(`${s.origin}/_admin/documents/${PERSON}/${OTHER}`, { method: 'DELETE' })).status).toBe(404);
    expect((await fetch(`${s.origin}/_admin/documents/${PERSON}/${OTHER}`, { method: 'PUT', body: 'x' })).status).toBe(404);
    expect((await fetch(`${s.origin}/_admin/documents/${PERSON}/not-a-guid`, { method: 'DELETE' })).status).toBe(400);
    expect(s.documents().map((d) => d.documentId)).toEqual([DOC]);

    await s.close(); // (withSandbox would close it again after the test)
    const again = await withSandbox({ dir });
    expect(again.documents()).toEqual([expect.objectContaining({ documentId: DOC, sha256: sha('tampered bytes'), uploads: 1 })]);
  });

  it('are not there without --admin', async () => {
    const s = await withSandbox({ admin: false });
    expect((await fetch(`${s.origin}/_admin/documents/${PERSON}/${DOC}`, { method: 'DELETE' })).status).toBe(404);
  });
});
