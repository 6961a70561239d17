/** Files and manifests the benchmarks feed to idsync, curl and the bare client. */
import { randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream, mkdirSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';

export const PERSONS = Array.from({ length: 8 }, () => randomUUID());

export function writeFiles(dir: string, count: number, size: number): string[] {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const f = path.join(dir, `doc-${i}.bin`);
    if (!existsSync(f) || statSync(f).size !== size) writeFileSync(f, randomBytes(size));
    files.push(f);
  }
  return files;
}

export interface UploadRow {
  personId: string;
  publicId: string;
  name: string;
  file: string;
}

/** Fresh publicIds for every run, so each run really uploads every file. */
export function uploadRows(files: string[]): UploadRow[] {
  return files.map((file, i) => ({ personId: PERSONS[i % PERSONS.length]!, publicId: randomUUID(), name: `Doc-${i}`, file }));
}

export function writeImportManifest(file: string, rows: UploadRow[]): string {
  writeFileSync(file, `personId,file,name,publicId\n${rows.map((r) => `${r.personId},${r.file},${r.name},${r.publicId}`).join('\n')}\n`);
  return file;
}

/** One curl argument line per upload, exactly the -F parts of econnect-api.md's upload line. */
export function writeCurlUploadArgs(file: string, rows: UploadRow[]): string {
  writeFileSync(file, rows.map((r) => `-F personId=${r.personId} -F name=${r.name} -F publicId=${r.publicId} -F file=@${r.file}`).join('\n') + '\n');
  return file;
}

export function faceIds(count: number): string[] {
  return Array.from({ length: count }, () => {
    let id = randomUUID();
    while (id.startsWith('00000000')) id = randomUUID();
    return id;
  });
}

export function writeExportManifest(file: string, faces: string[]): string {
  writeFileSync(file, `type,faceId\n${faces.map((f) => `enrollmentPhoto,${f}`).join('\n')}\n`);
  return file;
}

/** A large import manifest, written in chunks (rows point at a few real files). */
export async function writeBigManifest(file: string, rows: number, files: string[]): Promise<void> {
  const out = createWriteStream(file);
  out.write('personId,file,name,description,publicId\n');
  let chunk = '';
  for (let i = 0; i < rows; i++) {
    chunk += `${PERSONS[i % PERSONS.length]},${files[i % files.length]},Document ${i},row ${i},${randomUUID()}\n`;
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end(chunk);
  await once(out, 'finish');
}
