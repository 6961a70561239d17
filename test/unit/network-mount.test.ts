import { describe, expect, it } from 'vitest';
import { isNetworkFsType, networkMountFor, parseMounts } from '../../src/sources/network-mount.ts';

const MOUNTINFO = [
  '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
  '40 22 0:35 / /mnt/scans rw,relatime shared:20 - nfs4 nas.local:/export/scans rw,vers=4.2',
  '41 22 0:36 / /srv/drop\\040box rw,relatime - cifs //filer/drop rw,vers=3.0',
  '42 22 0:37 / /home/ops/remote rw,nosuid - fuse.sshfs ops@host:/data rw',
  '43 22 0:38 / /srv/local rw - xfs /dev/sdb1 rw',
  '44 43 0:39 / /srv/local/person-x rw - smb3 //filer/x rw',
  '45 22 0:40 / /mnt/scans/cache rw - tmpfs tmpfs rw',
].join('\n');

const PROC_MOUNTS = ['/dev/sda1 / ext4 rw,relatime 0 0', 'nas:/vol /data nfs rw,vers=3 0 0', 'tmpfs /tmp tmpfs rw 0 0'].join('\n');

describe('network mount detection', () => {
  it('parses mountinfo (with octal escapes) and /proc/mounts', () => {
    expect(parseMounts(MOUNTINFO)[2]).toEqual({ mountPoint: '/srv/drop box', fsType: 'cifs', source: '//filer/drop' });
    expect(parseMounts(PROC_MOUNTS)[1]).toEqual({ mountPoint: '/data', fsType: 'nfs', source: 'nas:/vol' });
    expect(parseMounts('garbage\n\n')).toEqual([]);
  });

  it.each([
    ['/mnt/scans/incoming', 'nfs4'],
    ['/mnt/scans', 'nfs4'],
    ['/srv/drop box/a', 'cifs'],
    ['/home/ops/remote/x', 'fuse.sshfs'],
    ['/srv/local', 'smb3'], // a person folder inside DIR is a share
    ['/home/ops', 'fuse.sshfs'], // likewise, deeper down
  ])('%s needs polling (%s)', (dir, fsType) => {
    expect(networkMountFor(MOUNTINFO, dir)?.fsType).toBe(fsType);
  });

  it.each(['/srv/localx', '/mnt/scans/cache', '/mnt/scansx', '/home/ops/other', '/srv/local/person-y'])('%s is local', (dir) => {
    expect(networkMountFor(MOUNTINFO, dir)).toBeUndefined();
  });

  it('works on /proc/mounts text and on no text at all', () => {
    expect(networkMountFor(PROC_MOUNTS, '/data/drop')?.fsType).toBe('nfs');
    expect(networkMountFor(PROC_MOUNTS, '/tmp/drop')).toBeUndefined();
    expect(networkMountFor('', '/anything')).toBeUndefined();
  });

  it('knows the network file system types', () => {
    for (const t of ['nfs', 'NFS4', 'cifs', 'smb3', 'smbfs', 'fuse.sshfs', 'fuse.rclone', '9p']) expect(isNetworkFsType(t)).toBe(true);
    for (const t of ['ext4', 'xfs', 'btrfs', 'tmpfs', 'overlay', 'fuse.gvfsd-fuse', 'zfs']) expect(isNetworkFsType(t)).toBe(false);
  });
});
