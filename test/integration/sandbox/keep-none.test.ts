import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../helpers/fixtures.ts';
import { login, uploadForm, withSandbox } from '../../helpers/sandbox.ts';

const PERSON = '6fa459ea-ee8a-4ca4-894e-db77e160355e';
const DOC = '16fd2706-8baf-433b-82eb-8c7fada847da';
const OTHER = '7c9e6679-7425-40de-944b-e07fc1f90ae7';

type Sandbox = Awaited<ReturnType<typeof withSandbox>>;

/** Uploads DOC, DOC again (publicId in upper case: the same document) and OTHER; the three statuses. */
async function uploadThree(s: Sandbox): Promise<number[]> {
  const auth = { authorization: `Bearer ${await login(s)}` };
  const send = async (publicId: string, bytes: string) =>
    (await fetch(`${s.url}/api/v1/people/fileDocuments/upload`, { method: 'POST', headers: auth, body: uploadForm({ personId: PERSON, name: 'Passport', publicId }, { name: 'a.pdf', bytes }) })).status;
  return [await send(DOC, 'first'), await send(DOC.toUpperCase(), 'second'), await send(OTHER, 'other')];
}

async function tally(s: Sandbox): Promise<unknown> {
  return (await fetch(`${s.origin}/_admin/document-tally`)).json();
}

describe('the sandbox with --keep none', () => {
  it('answers uploads as usual, counts documents and duplicates, and keeps nothing', async () => {
    const dir = tempDir('sandbox-keep-none');
    const s = await withSandbox({ dir, keep: 'none' });
    expect(await uploadThree(s)).toEqual([200, 200, 200]);
    expect(await tally(s)).toEqual({ documents: 2, uploads: 3, duplicates: 1 });
    expect(s.documentTally()).toEqual({ documents: 2, uploads: 3, duplicates: 1 });
    expect(s.stats().uploads).toBe(3);
    const token = await login(s);
    expect((await fetch(`${s.url}/api/v1/people/${PERSON}/fileDocuments/${DOC}/data`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(404);
    expect(s.documents()).toEqual([]);
    expect(existsSync(path.join(dir, 'files'))).toBe(false);
    expect(existsSync(path.join(dir, 'documents.jsonl'))).toBe(false);
    expect((await fetch(`${s.origin}/_admin/documents/${PERSON}/${DOC}`, { method: 'PUT', body: 'x' })).status).toBe(404);
  });

  it('refuses a second upload of a document under --duplicate-policy reject', async () => {
    const s = await withSandbox({ keep: 'none', duplicatePolicy: 'reject' });
    expect(await uploadThree(s)).toEqual([200, 409, 200]);
    expect(await tally(s)).toEqual({ documents: 2, uploads: 2, duplicates: 0 });
  });

  it('tallies the same way when it keeps everything', async () => {
    const s = await withSandbox({});
    expect(await uploadThree(s)).toEqual([200, 200, 200]);
    expect(await tally(s)).toEqual({ documents: 2, uploads: 3, duplicates: 1 });
    expect(s.documents()).toHaveLength(2);
  });
});
