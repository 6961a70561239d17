import type { Logger } from '../log.ts';
import type { CapacityGate } from './capacity-gate.ts';
import type { DetectionSchedule } from './detection-schedule.ts';
import type { DocumentKeeper } from './document-store.ts';
import type { FaultInjector } from './fault-injector.ts';
import type { PeopleDirectory } from './people-directory.ts';
import type { Permission } from './permissions.ts';
import type { PhotoLibrary } from './photo-library.ts';
import type { StatsCollector } from './sandbox-stats.ts';
import type { TokenIssuer } from './token-issuer.ts';

export interface SandboxUser {
  username: string;
  password: string;
  permissions: Permission[];
}

/** Everything a request handler reaches: one object, built once by startSandbox. */
export interface SandboxContext {
  users: SandboxUser[];
  tokens: TokenIssuer;
  people: PeopleDirectory;
  photos: PhotoLibrary;
  detections: DetectionSchedule;
  documents: DocumentKeeper;
  faults: FaultInjector;
  capacity: CapacityGate;
  stats: StatsCollector;
  now: () => number;
  log: Logger;
}
