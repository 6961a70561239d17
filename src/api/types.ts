/** Shapes of the API's JSON answers (docs/api-contract.md). Unknown fields are kept, never rejected. */

export interface DetectionQuery {
  skip?: number;
  take?: number;
  /** Unix epoch ms, inclusive. */
  epochStartMs?: number;
  /** Unix epoch ms, inclusive. */
  epochEndMs?: number;
  dateAscending?: boolean;
}

export interface DetectionItem {
  confidence?: number;
  dateTimeUtc?: string;
  timeZone?: string;
  detector?: string;
  /** Base64 JPEG, or null. */
  image?: string | null;
  [field: string]: unknown;
}

export interface PersonRecord {
  personId: string;
  aliases?: Array<{ firstName?: string; lastName?: string; [field: string]: unknown }>;
  addresses?: unknown[];
  entityFields?: unknown[];
  tags?: unknown[];
  notes?: unknown[];
  [field: string]: unknown;
}

export interface DownloadResult {
  /** Final path of the file (only ever complete: written to a temp name, then renamed). */
  path: string;
  bytes: number;
  /** Hex SHA-256 of the bytes written. */
  sha256: string;
  contentType?: string;
  fileName?: string;
}

export interface ResponseMeta {
  contentType?: string;
  /** From Content-Disposition, sanitised to a plain file name (no folders, no control characters). */
  fileName?: string;
}

/** Where a download goes: a path, or a path decided from the answer's headers. */
export type DownloadPath = string | ((meta: ResponseMeta) => string);

/**
 * A download confined to `root` (the real path of --out): every folder level is created and
 * checked without following links, and checked again just before the rename (src/outputs/out-dir.ts).
 */
export interface ConfinedDest {
  root: string;
  path: DownloadPath;
}

export type DownloadDest = DownloadPath | ConfinedDest;

export interface UploadInput {
  personId: string;
  name: string;
  description?: string;
  publicId: string;
  filePath: string;
  /** The file's bytes when the caller already read them (small files: read once for hash and upload). */
  data?: Buffer;
  /** Name sent with the file part; default: the file's base name. */
  fileName?: string;
  contentType?: string;
  /**
   * What the caller hashed (sha256 hex and size). A file streamed from disk is hashed again
   * while it is sent and its last bytes are held back until both match, so the server never
   * gets a complete request with other bytes (FileChangedError instead).
   */
  expect?: { sha256: string; bytes: number };
}

/** One request's end, as an observer (metrics) sees it: its endpoint template, never its ids. */
export interface ResponseEvent {
  method: string;
  /** e.g. `/api/v1/people/{personId}/fileDocuments/{documentId}/data` (src/api/endpoints.ts). */
  endpoint: string;
  /** The HTTP status, when an answer came. */
  status?: number;
  /** The failure's code (E_NETWORK, E_TIMEOUT, E_TLS …), when none came. */
  error?: string;
  ms: number;
}
