export { startSandbox, defaultUser, type Sandbox, type SandboxOptions } from './sandbox-server.ts';
export type { SandboxUser } from './sandbox-context.ts';
export type { FaultSettings } from './fault-settings.ts';
export type { SandboxStats } from './sandbox-stats.ts';
export type { StoredDocumentInfo, DuplicatePolicy, DocumentTally } from './document-store.ts';
export { PERMISSIONS, parsePermission, PERMISSION_SHORT_FORMS, type Permission } from './permissions.ts';
export { parseUserSpec } from './user-spec.ts';
