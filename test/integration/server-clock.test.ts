import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.ts';
import { Secret } from '../../src/config/secret.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const FACE = '5a1e3c9d-2b4f-4c6a-8e7d-9f0a1b2c3d4e';

describe('a server whose clock is hours behind ours (issue #15)', () => {
  it('200 requests with 1 h tokens from a server 5 h behind cost one login', async () => {
    const s = await withSandbox({ now: () => Date.now() - 5 * 3_600_000, tokenTtlSeconds: 3600 });
    const client = new ApiClient({ apiUrl: s.url, username: 'migrator', password: new Secret(s.password) });
    const dir = tempDir();
    try {
      for (let i = 0; i < 200; i++) await client.downloadEnrollmentPhoto(FACE, path.join(dir, `p${i % 4}-${i}.jpg`));
    } finally {
      await client.close();
    }
    expect(client.stats().logins).toBe(1);
    expect(s.stats().logins).toBe(1);
  });
});
