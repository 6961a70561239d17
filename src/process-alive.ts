/**
 * Whether a process of this machine is alive: signal 0 checks without touching it. EPERM means it
 * exists under another user (alive); ESRCH that there is none.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
