import { createHash } from 'node:crypto';
import type { CommitResult, DocumentKeeper, DocumentTally, DuplicatePolicy, StoredDocumentInfo } from './document-store.ts';
import { FingerprintSet } from './fingerprint-set.ts';

/**
 * `--keep none`: uploads are received and hashed like any other, then forgotten; what stays is a
 * fingerprint of each (personId, documentId) (8 bytes of its sha256) and the counts. For benches
 * of millions of uploads, where keeping every document on disk and in a Map made the sandbox the
 * bottleneck (and GET /_admin/documents of a million entries no answer at all). Nothing can be
 * downloaded: every document read answers 404, as from a server that lost them.
 */
export class UploadTally implements DocumentKeeper {
  readonly #seen = new FingerprintSet();
  readonly #policy: DuplicatePolicy;
  #uploads = 0;

  constructor(policy: DuplicatePolicy) {
    this.#policy = policy;
  }

  incomingPath(): undefined {
    return undefined;
  }

  discard(): void {}

  commit(_incoming: string | undefined, meta: Omit<StoredDocumentInfo, 'uploads' | 'storedAt'>): CommitResult {
    const fresh = this.#seen.add(createHash('sha256').update(`${meta.personId.toLowerCase()}/${meta.documentId.toLowerCase()}`).digest());
    if (!fresh && this.#policy === 'reject') return 'duplicate-rejected';
    this.#uploads++;
    return 'stored';
  }

  replace(): boolean {
    return false;
  }

  remove(): boolean {
    return false;
  }

  find(): undefined {
    return undefined;
  }

  list(): StoredDocumentInfo[] {
    return [];
  }

  tally(): DocumentTally {
    return { documents: this.#seen.size, uploads: this.#uploads, duplicates: this.#uploads - this.#seen.size };
  }

  close(): void {}
}
