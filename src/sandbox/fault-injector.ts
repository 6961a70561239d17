import { mulberry32 } from './seeded-random.ts';
import type { FaultSettings } from './fault-settings.ts';

export type EarlyFault = { kind: 'reset' } | { kind: 'throttle'; retryAfterSeconds: number } | { kind: 'fail'; status: 500 | 502 | 503 };

export interface FaultPlan {
  latencyMs: number;
  /** answered instead of handling the request at all */
  early: EarlyFault | undefined;
  /** uploads only: store, then destroy the connection */
  loseResponse: boolean;
  slowBody: boolean;
}

const FAIL_STATUSES = [500, 502, 503] as const;

/** What a bad photo answer holds instead of the JPEG; they take turns, so a test meets each. */
export const BAD_PHOTO_KINDS = ['html', 'json', 'empty'] as const;
export type BadPhotoKind = (typeof BAD_PHOTO_KINDS)[number];

/**
 * Decides, per request, which fault hits it. Every request draws the same number of values
 * from the seeded PRNG whatever the settings, so a run with the same seed and the same
 * request order meets the same faults.
 */
export class FaultInjector {
  private settings: FaultSettings = {};
  private random: () => number = mulberry32(0);
  /** Its own sequence: bad photos must not shift the faults that a seed gives every other request. */
  private photoRandom: () => number = mulberry32(0);
  private badPhotos = 0;

  constructor(settings: FaultSettings = {}) {
    this.set(settings);
  }

  set(settings: FaultSettings): void {
    this.settings = { ...settings };
    this.random = mulberry32(settings.seed ?? 1);
    this.photoRandom = mulberry32((settings.seed ?? 1) ^ 0x5eed7070);
    this.badPhotos = 0;
  }

  get(): FaultSettings {
    return { ...this.settings };
  }

  plan(): FaultPlan {
    const s = this.settings;
    const [r1, r2, r3, r4, r5, r6] = [this.random(), this.random(), this.random(), this.random(), this.random(), this.random()];
    let early: EarlyFault | undefined;
    if (r1 < (s.resetRate ?? 0)) early = { kind: 'reset' };
    else if (r2 < (s.throttleRate ?? 0)) early = { kind: 'throttle', retryAfterSeconds: s.retryAfterSeconds ?? 1 };
    else if (r3 < (s.failRate ?? 0)) early = { kind: 'fail', status: FAIL_STATUSES[Math.floor(r6 * 3)]! };
    return { latencyMs: s.latencyMs ?? 0, early, loseResponse: r4 < (s.lostResponseRate ?? 0), slowBody: r5 < (s.slowBodyRate ?? 0) };
  }

  /** For a photo answer: undefined (send the photo) or what to send instead. */
  badPhoto(): BadPhotoKind | undefined {
    if (this.photoRandom() >= (this.settings.badPhotoRate ?? 0)) return undefined;
    return BAD_PHOTO_KINDS[this.badPhotos++ % BAD_PHOTO_KINDS.length];
  }

  slowBodyDelayMs(): number {
    return this.settings.slowBodyDelayMs ?? 200;
  }
}
