import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import path from 'node:path';

export type DuplicatePolicy = 'store' | 'overwrite' | 'reject';

export interface StoredDocumentInfo {
  personId: string;
  documentId: string;
  name: string;
  description: string;
  fileName: string;
  contentType: string;
  bytes: number;
  sha256: string;
  /** How many times this (personId, documentId) was stored (a retry that stored twice shows 2). */
  uploads: number;
  /** ISO time of the latest store */
  storedAt: string;
}

interface Entry {
  info: StoredDocumentInfo;
  /** the file downloads read (the latest copy) */
  file: string;
}

export type CommitResult = 'stored' | 'duplicate-rejected';

/** GET /_admin/document-tally: exactly-once at a glance, without listing a million documents. */
export interface DocumentTally {
  /** Distinct (personId, documentId) held. */
  documents: number;
  /** Stores (uploads accepted). */
  uploads: number;
  /** Stores of a (personId, documentId) already held: uploads beyond the first. */
  duplicates: number;
}

/**
 * What the sandbox does with uploads: DocumentStore keeps them (`--keep all`), UploadTally only
 * counts them (`--keep none`). An upload in progress goes to incomingPath() (undefined: it is only
 * hashed), then commit() or discard() with that path.
 */
export interface DocumentKeeper {
  incomingPath(): string | undefined;
  discard(incoming: string | undefined): void;
  commit(incoming: string | undefined, meta: Omit<StoredDocumentInfo, 'uploads' | 'storedAt'>): CommitResult;
  replace(personId: string, documentId: string, incoming: string | undefined, content: { bytes: number; sha256: string }): boolean;
  remove(personId: string, documentId: string): boolean;
  find(personId: string, documentId: string): { info: StoredDocumentInfo; file: string } | undefined;
  list(): StoredDocumentInfo[];
  tally(): DocumentTally;
  close(): void;
}

/**
 * Uploaded documents on disk: `<dir>/files/<uuid>` plus an append-only index
 * `<dir>/documents.jsonl` (one line per store), replayed at start so a restarted sandbox
 * with the same `--dir` still has every document. Files arrive in `<dir>/incoming/` and are
 * renamed into place only when complete.
 */
export class DocumentStore implements DocumentKeeper {
  private readonly entries = new Map<string, Entry>();
  private readonly filesDir: string;
  private readonly incomingDir: string;
  private readonly indexFd: number;

  constructor(
    private readonly dir: string,
    private readonly policy: DuplicatePolicy,
    private readonly now: () => number,
  ) {
    this.filesDir = path.join(dir, 'files');
    this.incomingDir = path.join(dir, 'incoming');
    mkdirSync(this.filesDir, { recursive: true });
    rmSync(this.incomingDir, { recursive: true, force: true });
    mkdirSync(this.incomingDir, { recursive: true });
    const indexFile = path.join(dir, 'documents.jsonl');
    if (existsSync(indexFile)) this.replay(readFileSync(indexFile, 'utf8'));
    this.indexFd = openSync(indexFile, 'a');
  }

  /** A fresh path for an upload in progress. */
  incomingPath(): string {
    return path.join(this.incomingDir, `${randomUUID()}.part`);
  }

  discard(incoming: string | undefined): void {
    if (incoming !== undefined) rmSync(incoming, { force: true });
  }

  /** Moves a complete upload into place under the duplicate policy. */
  commit(incoming: string | undefined, meta: Omit<StoredDocumentInfo, 'uploads' | 'storedAt'>): CommitResult {
    if (incoming === undefined) throw new Error('DocumentStore.commit: the upload was not written to incomingPath()');
    const key = keyOf(meta.personId, meta.documentId);
    const existing = this.entries.get(key);
    if (existing && this.policy === 'reject') {
      this.discard(incoming);
      return 'duplicate-rejected';
    }
    const file = path.join(this.filesDir, randomUUID());
    renameSync(incoming, file);
    // `store` keeps the earlier copy on disk (a second document, as the worst-case server would); `overwrite` drops it.
    if (existing && this.policy === 'overwrite') rmSync(existing.file, { force: true });
    const storedAt = new Date(this.now()).toISOString();
    const line = { ...meta, storedAt, file: path.basename(file) };
    writeSync(this.indexFd, `${JSON.stringify(line)}\n`);
    this.apply(line);
    return 'stored';
  }

  /**
   * Gives a stored document other bytes (an admin call: what a server whose copy was altered
   * would serve). Its metadata and upload count stay; false when there is no such document.
   */
  replace(personId: string, documentId: string, incoming: string | undefined, content: { bytes: number; sha256: string }): boolean {
    if (incoming === undefined) throw new Error('DocumentStore.replace: the bytes were not written to incomingPath()');
    const existing = this.entries.get(keyOf(personId, documentId));
    if (!existing) {
      this.discard(incoming);
      return false;
    }
    const file = path.join(this.filesDir, randomUUID());
    renameSync(incoming, file);
    rmSync(existing.file, { force: true });
    const { uploads: _uploads, ...kept } = existing.info;
    const line: StoredLine = { ...kept, ...content, storedAt: new Date(this.now()).toISOString(), file: path.basename(file), replaced: true };
    writeSync(this.indexFd, `${JSON.stringify(line)}\n`);
    this.apply(line);
    return true;
  }

  /** Forgets a stored document and drops its bytes (an admin call: a document lost on the server); false when there is none. */
  remove(personId: string, documentId: string): boolean {
    const existing = this.entries.get(keyOf(personId, documentId));
    if (!existing) return false;
    writeSync(this.indexFd, `${JSON.stringify({ personId: existing.info.personId, documentId: existing.info.documentId, deleted: true })}\n`);
    this.entries.delete(keyOf(personId, documentId));
    rmSync(existing.file, { force: true });
    return true;
  }

  find(personId: string, documentId: string): { info: StoredDocumentInfo; file: string } | undefined {
    return this.entries.get(keyOf(personId, documentId));
  }

  list(): StoredDocumentInfo[] {
    return [...this.entries.values()].map((e) => ({ ...e.info }));
  }

  /** How many documents are held, how many stores made them, and how many of those stored one already held. */
  tally(): DocumentTally {
    let uploads = 0;
    for (const e of this.entries.values()) uploads += e.info.uploads;
    return { documents: this.entries.size, uploads, duplicates: uploads - this.entries.size };
  }

  close(): void {
    closeSync(this.indexFd);
  }

  private replay(text: string): void {
    for (const raw of text.split('\n')) {
      if (!raw.trim()) continue;
      try {
        this.apply(JSON.parse(raw) as StoredLine);
      } catch {
        // A line cut short by a crash mid-write: the upload it describes never got its 200.
      }
    }
  }

  private apply(line: StoredLine | DeletedLine): void {
    const key = keyOf(line.personId, line.documentId);
    if ('deleted' in line) {
      this.entries.delete(key);
      return;
    }
    const previous = this.entries.get(key);
    const { file, replaced, ...info } = line;
    const uploads = (previous?.info.uploads ?? 0) + (replaced ? 0 : 1);
    this.entries.set(key, { info: { ...info, uploads }, file: path.join(this.filesDir, file) });
  }
}

/** A line of documents.jsonl: a store (an upload, or an admin's replacement of the bytes) … */
type StoredLine = Omit<StoredDocumentInfo, 'uploads'> & { file: string; replaced?: boolean };
/** … or an admin's removal. */
interface DeletedLine {
  personId: string;
  documentId: string;
  deleted: true;
}

function keyOf(personId: string, documentId: string): string {
  return `${personId.toLowerCase()}/${documentId.toLowerCase()}`;
}
