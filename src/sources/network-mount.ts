import path from 'node:path';

/** One line of /proc/self/mountinfo or /proc/mounts. */
export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
}

/**
 * File systems on which inotify sees only the changes made by this machine, so files that
 * other machines drop onto the share never raise an event: these must be polled.
 */
const NETWORK_FS = new Set([
  'nfs',
  'nfs4',
  'cifs',
  'smb',
  'smb2',
  'smb3',
  'smbfs',
  'ncpfs',
  'afs',
  '9p',
  'ceph',
  'glusterfs',
  'lustre',
  'gpfs',
  'davfs',
  'vboxsf',
  'vmhgfs',
  'virtiofs',
  'sshfs',
]);

export function isNetworkFsType(fsType: string): boolean {
  const t = fsType.toLowerCase();
  if (NETWORK_FS.has(t)) return true;
  // FUSE file systems name their backend after the dot: fuse.sshfs, fuse.rclone, fuse.s3fs …
  // Local FUSE backends are few; treat the known network ones as network.
  if (t.startsWith('fuse.')) return /^(sshfs|rclone|s3fs|gcsfuse|davfs2?|glusterfs|cephfs|ceph-fuse|vmhgfs-fuse|smbnetfs|curlftpfs|goofys|juicefs|blobfuse2?)$/.test(t.slice(5));
  return false;
}

/** The kernel escapes space, tab, newline and backslash in mount points as octal (\040 …). */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses either /proc/self/mountinfo (has " - " before the fs type) or /proc/mounts. Bad lines are skipped. */
export function parseMounts(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const fields = line.trim().split(/\s+/);
    const dash = fields.indexOf('-');
    if (dash >= 6) {
      // mountinfo: id parent major:minor root mountPoint options [optional…] - fsType source superOptions
      const fsType = fields[dash + 1];
      if (!fsType || !fields[4]) continue;
      out.push({ mountPoint: unescapeMountField(fields[4]), fsType, source: unescapeMountField(fields[dash + 2] ?? '') });
    } else if (fields.length >= 3 && fields[1]?.startsWith('/')) {
      // /proc/mounts: source mountPoint fsType options dump pass
      out.push({ mountPoint: unescapeMountField(fields[1]), fsType: fields[2]!, source: unescapeMountField(fields[0]!) });
    }
  }
  return out;
}

function contains(mountPoint: string, p: string): boolean {
  const rel = path.posix.relative(mountPoint, p);
  return rel === '' || (!rel.startsWith('..') && !path.posix.isAbsolute(rel));
}

/**
 * The network mount that makes polling necessary for `dir` (absolute, symlinks resolved):
 * the mount holding `dir` when it is a network one, else any network mount inside `dir`
 * (a person folder mounted from a share). Undefined when change events can be trusted.
 */
export function networkMountFor(mountsText: string, dir: string): MountEntry | undefined {
  const mounts = parseMounts(mountsText);
  let holder: MountEntry | undefined;
  for (const m of mounts) {
    // The last matching line wins on equal length: later mounts hide earlier ones at the same point.
    if (contains(m.mountPoint, dir) && (!holder || m.mountPoint.length >= holder.mountPoint.length)) holder = m;
  }
  if (holder && isNetworkFsType(holder.fsType)) return holder;
  return mounts.find((m) => m.mountPoint !== dir && contains(dir, m.mountPoint) && isNetworkFsType(m.fsType));
}
