import { describe, expect, it } from 'vitest';
import { CapacityGate, type Admission } from '../../src/sandbox/capacity-gate.ts';
import { faultSettingsProblems, type FaultSettings } from '../../src/sandbox/fault-settings.ts';

function admitted(a: Admission): Extract<Admission, { admitted: true }> {
  if (!a.admitted) throw new Error('refused');
  return a;
}

describe('CapacityGate', () => {
  it('admits up to capacity, refuses the next, and takes one more once a place is left', () => {
    const gate = new CapacityGate(() => ({ capacity: 3 }));
    const held = [gate.enter(), gate.enter(), gate.enter()].map(admitted);
    expect(gate.enter().admitted).toBe(false);
    expect(gate.load()).toEqual({ handling: 3, maxHandling: 3 });
    held[0]!.leave();
    held[0]!.leave(); // twice: still one place
    expect(gate.load().handling).toBe(2);
    admitted(gate.enter());
    expect(gate.enter().admitted).toBe(false);
  });

  it('adds latency per request above the knee (default half the capacity)', () => {
    const gate = new CapacityGate(() => ({ capacity: 6, capacityLatencyMsPerRequest: 10 }));
    expect(Array.from({ length: 6 }, () => admitted(gate.enter()).extraLatencyMs)).toEqual([0, 0, 0, 10, 20, 30]);
    const knee = new CapacityGate(() => ({ capacityKnee: 1, capacityLatencyMsPerRequest: 5 }));
    expect(Array.from({ length: 4 }, () => admitted(knee.enter()).extraLatencyMs)).toEqual([0, 5, 10, 15]);
  });

  it('has no limit without capacity, and follows settings changed at run time', () => {
    let settings: FaultSettings = {};
    const gate = new CapacityGate(() => settings);
    for (let i = 0; i < 100; i++) expect(gate.enter().admitted).toBe(true);
    settings = { capacity: 100 };
    expect(gate.enter().admitted).toBe(false);
    settings = { capacity: 101 };
    expect(gate.enter().admitted).toBe(true);
  });

  it('capacity settings are checked like the other faults', () => {
    expect(faultSettingsProblems({ capacity: 0 })).toEqual(['capacity must be a whole number >= 1 (leave it out for no limit)']);
    expect(faultSettingsProblems({ capacity: 2.5 })).toHaveLength(1);
    expect(faultSettingsProblems({ capacityKnee: -1 })).toHaveLength(1);
    expect(faultSettingsProblems({ capacity: 4, capacityKnee: 0, capacityLatencyMsPerRequest: 2.5 })).toEqual([]);
  });
});
