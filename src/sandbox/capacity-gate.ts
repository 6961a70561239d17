import type { FaultSettings } from './fault-settings.ts';

export type Admission =
  /** Handled: `extraLatencyMs` is what the load adds, `leave()` frees the place when the answer is done. */
  | { admitted: true; extraLatencyMs: number; leave(): void }
  /** Over capacity: answer 503 without handling it. */
  | { admitted: false };

/**
 * The server's capacity model (`capacity`, `capacityKnee`, `capacityLatencyMsPerRequest` in the
 * fault settings): at most `capacity` requests are handled at once and the next one is refused
 * with 503, as a server whose worker pool and queue are full; above the knee each request
 * handled at once adds latency to the next, as a server that queues before it refuses. A
 * refused request holds no place. Settings are read per request, so PUT /_admin/faults
 * changes them under load.
 */
export class CapacityGate {
  #handling = 0;
  #maxHandling = 0;

  constructor(private readonly settings: () => FaultSettings) {}

  enter(): Admission {
    const s = this.settings();
    if (s.capacity !== undefined && this.#handling >= s.capacity) return { admitted: false };
    this.#handling++;
    if (this.#handling > this.#maxHandling) this.#maxHandling = this.#handling;
    const knee = s.capacityKnee ?? (s.capacity !== undefined ? Math.ceil(s.capacity / 2) : 0);
    const extraLatencyMs = (s.capacityLatencyMsPerRequest ?? 0) * Math.max(0, this.#handling - knee);
    let left = false;
    return {
      admitted: true,
      extraLatencyMs,
      leave: () => {
        if (left) return;
        left = true;
        this.#handling--;
      },
    };
  }

  /** Requests handled now, and the most at once since the last reset. */
  load(): { handling: number; maxHandling: number } {
    return { handling: this.#handling, maxHandling: this.#maxHandling };
  }

  resetMax(): void {
    this.#maxHandling = this.#handling;
  }
}
